"""Test support shared by tests and benchmarks: random-weight Qwen-VL models built offline
(`random_model`) and the crash harness (`crash`). Nothing here is part of the app."""
