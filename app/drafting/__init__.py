"""Drafting captions with a vision-language model, as the app sees it.

`engine` is the interface every engine implements (inputs, outputs, errors, names), `schema`
the JSON a model drafts in and its conversion to a caption, `prompt` what it is asked;
`open_engine` opens the engine a job names: `openai_engine` (any OpenAI-compatible server) or
the GPU runtime in `local/`. `jobs` holds a job's state (create, claim, cancel, progress),
`pipeline` the batch loop that runs one, `worker` the drafting process beside the server.
"""
