"""Drafting captions with a vision-language model: engines, prompt, schema, jobs."""
