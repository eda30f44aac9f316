"""Exporting a dataset for AI-Toolkit: PNG+JSON pairs, a manifest, a training YAML."""
