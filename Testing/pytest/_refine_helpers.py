"""Small synthetic scenes with known answers for the refine tests."""
from __future__ import annotations

import numpy as np

from TextSegLib.volume import Volume, make_ijk_to_ras


def ball(shape: tuple[int, int, int], centre, radius: float, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius**2


def two_spheres(shape=(48, 40, 36), spacing=(1.0, 1.0, 1.0), direction=None, seed: int = 0):
    """A bright image with two separate spheres (A, B) on a dark, noisy background.

    Returns ``(volume, sphere_a, sphere_b)``.
    """
    rng = np.random.default_rng(seed)
    a = ball(shape, (14, 20, 18), 8, spacing)
    b = ball(shape, (34, 20, 18), 7, spacing)
    img = np.where(a | b, 200.0, 0.0) + rng.normal(0, 10, shape)
    m = make_ijk_to_ras(spacing, (-10.0, 5.0, 30.0), np.eye(3) if direction is None else direction)
    return Volume(img.astype(np.float32), m, "ct", "synthetic"), a, b


def oblique_direction(deg: float = 25.0) -> np.ndarray:
    t = np.deg2rad(deg)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]])
    return rz @ rx


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(1, int(a.sum()) + int(b.sum()))


def protocol_click(pred: np.ndarray, ref: np.ndarray):
    """The simulated-click protocol's next click on an isotropic grid: ``(ijk, positive)``
    at the interior of the largest error region, or None (``benchmarks/clicks.py``)."""
    import sys
    from pathlib import Path

    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from clicks import next_click

    return next_click(pred, ref, np.ones(3))
