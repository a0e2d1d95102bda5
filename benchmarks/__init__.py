"""Throughput benchmarks: library overhead, tiny models on CPU, full-size shapes on a GPU, and
the rescoring of released logs. Run ``python -m benchmarks.run --help``; results and how they
were measured are in ``benchmarks/RESULTS.md``."""
