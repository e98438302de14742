"""Settings for the whole suite."""

from __future__ import annotations

import os

# Training's mixed_precision "auto" picks bf16 on CPUs with native bf16; the suite trains in float32 on every
# machine so that its tolerances mean the same everywhere (tests/genret/test_training.py tests "auto" itself).
os.environ.setdefault("ACCELERATE_MIXED_PRECISION", "no")
