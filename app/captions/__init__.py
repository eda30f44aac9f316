"""Captions: the Ideogram 4 caption schema, box conventions and the dialects read and written."""
