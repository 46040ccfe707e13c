"""Simulated-click protocol for interactive refinement.

Start from a degraded reference mask (erosion, dilation or a missing part,
tuned to about 0.70 Dice); each next click goes to the interior point
(maximum of the distance transform) of the largest error region: positive
if that region was missed, negative if it leaked. Records Dice after every
click and the number of clicks to reach 85 % / 90 % Dice (NoC, capped).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.count_nonzero(a & b)) / s


def _closest(candidates: list[np.ndarray], ref: np.ndarray, target: float) -> np.ndarray:
    return min(candidates, key=lambda m: abs(dice(m, ref) - target))


def degrade(ref: np.ndarray, kind: str, spacing: np.ndarray, target: float = 0.70) -> np.ndarray:
    """Degrade ``ref`` by ``kind`` ('erode', 'dilate', 'missing') to about ``target`` Dice."""
    spacing = np.asarray(spacing, float)
    if kind == "erode":
        d = ndimage.distance_transform_edt(ref, sampling=spacing)
        cands = [d > t for t in np.unique(np.quantile(d[ref], np.linspace(0.0, 0.8, 81)))]
    elif kind == "dilate":
        d = ndimage.distance_transform_edt(~ref, sampling=spacing)
        cands = [d <= t for t in np.linspace(0, 16 * spacing.max(), 81)]
    elif kind == "missing":  # cut the part beyond a plane across the longest axis
        idx = np.argwhere(ref)
        ax = int(np.argmax((idx.max(0) - idx.min(0)) * spacing))
        coords = np.arange(ref.shape[ax]).reshape([-1 if a == ax else 1 for a in range(3)])
        cands = [ref & (coords < c) for c in range(idx[:, ax].min(), idx[:, ax].max() + 1)]
    else:
        raise ValueError(kind)
    return _closest(cands, ref, target)


def next_click(pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """``(ijk, positive)`` at the interior of the largest error region, or None."""
    fn, fp = ref & ~pred, pred & ~ref
    best = None
    for err, positive in ((fn, True), (fp, False)):
        if not err.any():
            continue
        lab, n = ndimage.label(err)
        sizes = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(sizes)) + 1
        if best is None or sizes[k - 1] > best[0]:
            best = (int(sizes[k - 1]), lab == k, positive)
    if best is None:
        return None
    region = np.pad(best[1], 1)
    dt = ndimage.distance_transform_edt(region, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return np.array(np.unravel_index(int(np.argmax(dt)), dt.shape)), best[2]


@dataclass
class ClickRun:
    dices: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def noc(self, threshold: float, cap: int = 20) -> int:
        for n, d in enumerate(self.dices):
            if d >= threshold:
                return n
        return cap

    def at(self, n: int) -> float:
        return self.dices[min(n, len(self.dices) - 1)]


Step = Callable[[np.ndarray, np.ndarray, bool], np.ndarray]


def simulate(start: np.ndarray, ref: np.ndarray, spacing: np.ndarray, step: Step, max_clicks: int = 20) -> ClickRun:
    """Run the protocol; ``step(mask, ijk, positive)`` returns the refined mask."""
    run = ClickRun([dice(start, ref)])
    pred = start
    for _ in range(max_clicks):
        if run.dices[-1] >= 0.99:
            run.dices.append(run.dices[-1])
            continue
        click = next_click(pred, ref, spacing)
        if click is None:
            break
        t0 = time.perf_counter()
        pred = step(pred, click[0], click[1])
        run.seconds.append(time.perf_counter() - t0)
        run.dices.append(dice(pred, ref))
    while len(run.dices) <= max_clicks:
        run.dices.append(run.dices[-1])
    return run
