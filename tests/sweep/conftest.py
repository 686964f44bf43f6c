"""Fixtures shared by the sweep tests."""

from __future__ import annotations

import pytest
from _toy import write_toy_npz


@pytest.fixture
def npz(tmp_path):
    """A toy classification dataset as an ``.npz`` file (the CLI's ``--dataset npz``)."""
    return write_toy_npz(tmp_path / "toy.npz")
