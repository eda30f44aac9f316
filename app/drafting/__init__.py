"""Drafting captions as jobs, over the engines of app/engines/.

`open_engine` opens the engine a job names from the settings; `jobs` holds a job's state
(create, claim, cancel, progress), `pipeline` the batch loop that runs one, `worker` the
drafting process beside the server, `available` the models already on disk.
"""
