"""Intensity models of the built-in refiner: what the structure and its
surroundings look like, learnt from the current mask and the clicks.

:class:`IntensityModel` holds two smoothed, normalised intensity histograms
(the structure's and its surroundings'). The refiner uses it two ways:

* a **gate** where the two barely overlap (air against tissue): a change
  must fit the intensities, and may then reach further;
* a **plausibility check** everywhere else: a positive click never adds a
  voxel whose intensity the structure hardly has (fat next to the aorta,
  lung next to a lesion) and a negative click never removes one its
  surroundings hardly have, while soft tissue against soft tissue is left
  to the seeded segmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class IntensityModel:
    """Histograms ``fg`` / ``bg`` over ``bins`` bins spanning ``lo``..``hi``."""

    lo: float
    hi: float
    fg: np.ndarray
    bg: np.ndarray

    @classmethod
    def learn(cls, image: np.ndarray, mask: np.ndarray, outside: np.ndarray, pos: np.ndarray, neg: np.ndarray,
              bins: int = 64) -> "IntensityModel | None":
        """Learn from ``image`` voxels in ``mask`` (structure) and ``outside``;
        the clicks' 3x3x3 neighbourhoods count a third of each histogram.
        ``None`` when either side is empty or the image is flat."""
        return cls.learn_pair(image, mask, outside, pos, neg, bins)[0]

    @classmethod
    def learn_pair(cls, image: np.ndarray, mask: np.ndarray, outside: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                   bins: int = 64) -> "tuple[IntensityModel, IntensityModel] | tuple[None, None]":
        """``(with_clicks, without_clicks)``: :meth:`learn` with and without the
        clicks' neighbourhoods, from one binning of ``image``."""
        if not mask.any() or not outside.any():
            return None, None
        lo, hi = (float(v) for v in np.percentile(image, [0.5, 99.5]))
        if not hi > lo:
            return None, None
        idx = cls(lo, hi, np.zeros(bins), np.zeros(bins)).bin(image)

        def near(points: np.ndarray) -> np.ndarray:
            out = [idx[tuple(slice(max(0, int(c) - 1), int(c) + 2) for c in p)].ravel() for p in points]
            return np.concatenate(out) if out else np.zeros(0, np.int64)

        def density(h: np.ndarray, clicked: np.ndarray) -> np.ndarray:
            if len(clicked):  # what the user pointed at counts a third
                c = np.bincount(clicked, minlength=bins).astype(np.float64)
                h = (2.0 * h + c / c.sum()) / 3.0
            return ndimage.gaussian_filter1d(h, 1.5, mode="nearest") + 1e-6

        def hist(values: np.ndarray) -> np.ndarray:
            h = np.bincount(values, minlength=bins).astype(np.float64)
            return h / h.sum()

        h_fg, h_bg = hist(idx[mask]), hist(idx[outside])
        none = np.zeros(0, np.int64)
        return (cls(lo, hi, density(h_fg, near(pos)), density(h_bg, near(neg))),
                cls(lo, hi, density(h_fg, none), density(h_bg, none)))

    def bin(self, image: np.ndarray) -> np.ndarray:
        nb = len(self.fg)
        scaled = (np.asarray(image, dtype=np.float32) - self.lo) / (self.hi - self.lo) * (nb - 1)
        return np.clip(scaled.round().astype(np.int64), 0, nb - 1)

    @property
    def overlap(self) -> float:
        """Shared mass of the two histograms: 0 separable .. 1 identical."""
        return float(np.minimum(self.fg, self.bg).sum())

    def foreground_like(self, image: np.ndarray) -> np.ndarray:
        """Voxels more typical of the structure than of its surroundings."""
        return (self.fg >= self.bg)[self.bin(image)]

    def can_add(self, image: np.ndarray, ratio: float) -> np.ndarray:
        """Voxels the structure has at least ``ratio`` times as often as its surroundings."""
        return (self.fg >= ratio * self.bg)[self.bin(image)]

    def can_remove(self, image: np.ndarray, ratio: float) -> np.ndarray:
        """Voxels the surroundings have at least ``ratio`` times as often as the structure."""
        return (self.bg >= ratio * self.fg)[self.bin(image)]
