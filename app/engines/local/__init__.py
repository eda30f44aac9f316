"""The local engine's GPU runtime: loading a Qwen-VL model, the decode loop, the lean
one-token step, the Triton kernels and the transformers patches.

The only code in Atelier that imports torch, transformers, triton or xgrammar, and only when
a draft runs: `engine.LocalEngine` is what the rest of the app sees; `model_inputs` builds
its batches; `grammar` compiles the schema for a tokenizer and keeps it on disk, `lengths`
keeps the strings' bounds beside it; `decoder` is the loop over a static KV cache,
`text_step` the step it replays, `kernels` the step's Triton kernels, `vision` the packed
prefill of the vision tower, `closing` the shortest valid end of a cut answer, `fused` and
`attention` the other patches into the model's own forward, `options` the switches that
benchmarks use to measure each of them.
"""
