"""Shared fixtures for the model-side tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second intra-op thread, and on a shared 2-core machine OpenMP
    spinning against other processes makes them many times slower; the setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
