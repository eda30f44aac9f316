"""Drafting engines: a vision-language model's answers for a batch of images, as a library.

`interface` is what every engine is (inputs, outputs, errors, names, optional abilities),
`schema` the JSON a model drafts in and its conversion to a caption, `prompt` what it is
asked; `openai_engine` drafts on OpenAI-compatible servers and `local/` on this machine's GPU.
Nothing here knows the database or the settings: the caller (app/drafting/) opens an engine
with plain values and hands it images.
"""
