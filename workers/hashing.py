"""Hashing numbers with numpy, for seeded sampling and n-gram hashes."""

import numpy as np


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over uint64s: a bijection that scatters nearby inputs (consecutive ids give
    unrelated hashes)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
