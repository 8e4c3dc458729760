"""Session-wide test setup: the torchvision stand-in, generic seeds and the hypothesis profile (fixtures
for the DB live beside)."""

from __future__ import annotations

import os

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
from hypothesis import settings

# Before any test module imports pytorch-fid, clean-fid or torch-fidelity (all import torchvision at
# module level); see tests/helpers/torchvision_standin.py.
install_torchvision_standin()

DEFAULT_SEED = 20_241_123

# Property tests are deterministic by default: derandomize draws every test's examples from a seed
# derived from the test itself, and no example database replays failures found on another run, so a
# plain ``pytest`` and CI (which sets CI) test the same examples every time. Examples that once failed
# are kept as explicit ``@example(...)`` on their tests. ``HYPOTHESIS_PROFILE=explore`` searches afresh.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
