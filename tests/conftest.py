"""Session-wide test setup: the torchvision stand-in and generic seeds (fixtures for the DB live beside)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.databases import (  # noqa: F401  (fixtures, found by name)
    database_url,
    migrated_database_url,
    postgres_database_url,
    postgres_server,
    session_factory,
)
from helpers.services import redis_server  # noqa: F401  (fixture: a private redis-server)
from helpers.torchvision_standin import install_torchvision_standin

# Before any test module imports pytorch-fid, clean-fid or torch-fidelity (all import torchvision at
# module level); see tests/helpers/torchvision_standin.py.
install_torchvision_standin()

DEFAULT_SEED = 20_241_123


@pytest.fixture
def seed() -> int:
    return DEFAULT_SEED


@pytest.fixture
def torch_gen(seed: int) -> torch.Generator:
    """A fresh, seeded torch generator per test."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def np_rng(seed: int) -> np.random.Generator:
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(seed)
