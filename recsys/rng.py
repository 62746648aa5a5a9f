"""Explicit randomness: one helper turns a seed into a generator; only entry points seed globals."""

from __future__ import annotations

import random
import sys

import numpy as np

SeedLike = int | np.random.Generator | None


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed, or the generator itself.

    ``None`` is refused: every draw in recsys must be reproducible from the config.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError("a seed is required (got None): pass an int or a numpy Generator")
    return np.random.default_rng(int(seed))


def derive_seed(rng: np.random.Generator) -> int:
    """A fresh 31-bit int seed drawn from ``rng`` (for libraries that take an int)."""
    return int(rng.integers(0, 2**31 - 1))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (entry points only).

    torch is seeded when it is loaded (the entry point calls this once the model is built, so
    a torch model has loaded it); a run of a closed-form model never imports torch.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global state, on purpose
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
