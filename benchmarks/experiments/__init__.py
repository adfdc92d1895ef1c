"""Research analyses on the models the benchmarks save; not figures, not run by ``python -m benchmarks.run``.

Run from the repository root, e.g. ``python -m benchmarks.experiments.retrieval_errors MODEL``.
"""
