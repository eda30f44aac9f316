"""Images: decoding and refusal of bad files, the content store, thumbnails, import, hygiene."""
