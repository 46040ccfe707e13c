"""Shared helpers of the io / segmentation / bad-input tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from TextSegLib.volume import Volume, make_ijk_to_ras

DATA = Path(__file__).resolve().parents[1] / "Data"
TS = DATA / "totalsegmentator"
SLICERIO = DATA / "slicerio"
BAD = DATA / "bad_inputs"


def random_rotation(rng: np.random.Generator, left_handed: bool = False) -> np.ndarray:
    """A random orthonormal 3×3 matrix (QR of a Gaussian), optionally with determinant -1."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if left_handed:
        q[:, 2] = -q[:, 2]
    return q


def small_volume(rng: np.random.Generator, shape=(5, 4, 3), dtype=np.int16, left_handed=False,
                 spacing=None, origin=None) -> Volume:
    spacing = rng.uniform(0.3, 5.0, size=3) if spacing is None else spacing
    origin = rng.uniform(-300, 300, size=3) if origin is None else origin
    m = make_ijk_to_ras(spacing, origin, random_rotation(rng, left_handed))
    arr = rng.integers(-1024, 3000, size=shape).astype(dtype)
    return Volume(arr, m, "ct", "synthetic")
