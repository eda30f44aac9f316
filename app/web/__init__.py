"""The web app: JSON API under /api, HTML pages (HTMX) elsewhere."""
