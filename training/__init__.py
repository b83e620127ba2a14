"""Training: the run's config (``config``), its batches (``batches``), one iteration (``step``),
data parallelism and mixed precision (``parallel``, ``amp``), and its folder (``run``).
train.py tells the story over these; tests and tools/benchmark.py use them directly.
"""
import runtime  # noqa: F401  (the CPU math-library switch before paddle loads)
