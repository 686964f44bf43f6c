import os

import pytest
import torch

# The counter-hash dropout path compiles on first use (~20 s a process); tests run its eager
# kernels (bitwise equal, checked once in test_counter.py) unless a test opts in.
os.environ.setdefault("DROPLAB_NO_COMPILE", "1")

# Tests run on 2 cores; keep torch from oversubscribing when pytest-xdist runs workers.
torch.set_num_threads(int(os.environ.get("DROPLAB_TEST_THREADS", "1")))


@pytest.fixture
def gen():
    """A seeded torch.Generator: tests that draw masks use it, never the global RNG."""
    g = torch.Generator()
    g.manual_seed(1234)
    return g
