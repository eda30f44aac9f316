"""The local engine's parts that benchmarks switch off, one at a time, to measure each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalOptions:
    """What a benchmark changes; the defaults are what users run (None: on a GPU only)."""

    grammar: bool = True  # xgrammar's masks on every step
    closing: bool = True  # a row short of tokens gets its shortest valid end written
    graphs: bool | None = None  # the step replayed from a CUDA graph
    grouped_attention: bool | None = None  # query heads laid out over their shared KV head
    # With it: the prompts padded on the right, the prefill's attention causal over their
    # own columns with no mask (flash can run).
    # Off until its GPU test (bf16, the fused kernels, padded rows) and its speed have run
    # on a card: `bash bench/gpu_session.sh gputests prompt`.
    prompt_attention: bool = False
    # A batch's prompts written this many rows a forward (prefill.py), so its passing tensors
    # are one piece's and the automatic batch can grow to what its cache allows; 0: all
    # rows at once; -1: chosen with the automatic batch, in pieces only where that lets the
    # batch grow (engine.batch_and_pieces). Off until its GPU test and the 8B's batch have
    # run on a card: `bash bench/gpu_session.sh gputests pieces`.
    prefill_rows: int = 0
    fused_norms: bool | None = None  # RMSNorm in one kernel
    packed_vision: bool | None = None  # the vision tower's attention in one call (vision.py)
    fused_vision_rotary: bool | None = None  # unpacked: its rotary compiled into one kernel
    lean_step: bool = True  # Atelier's one-token step rather than the model's forward
    kernels: bool = True  # Triton kernels in the step at small batches
    triton_attention_below: int | None = None  # None: Atelier's attention at every batch
    # Atelier's attention reads the cache only up to the step's column (kernels.py), not the
    # empty columns after it.
    read_to_last: bool = True
    gpu_preprocess: bool = True  # images resized and patched on the GPU
    # A job's first batch prepared in parts while its images decode (`prefetch_decoded`).
    prepare_while_decoding: bool = True
    min_steps: int = 0  # decode at least this many steps whatever stops (equal work a batch)
    confidence: bool = True  # each drafted token's log probability kept (the draft's doubts)
    # A one-image batch feeds the tokens the grammar forces with the token before them, in
    # one forward (decoder.py): a real answer's 530 tokens in 305 forwards, where a forward
    # of 12 tokens took 1.91 ms and one token 1.73 on an H200 (bench/jump_forward.py).
    jump_forward: bool = True
