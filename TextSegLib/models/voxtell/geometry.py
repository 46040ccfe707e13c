"""VoxTell's grid: a source volume reoriented to RAS by axis permutation and flips only.

VoxTell does no resampling. Its file path reads a NIfTI with nnU-Net's
``NibabelIOWithReorient``: the image is reoriented to the closest RAS axes
(nibabel ``io_orientation`` / ``as_reoriented``) and the array is then transposed
``(2, 1, 0)``, so the network sees ``array[s, a, r]`` (not ``[r, a, s]``); the
voxel spacing is never changed. Here the same array is made from TextSeg's
:class:`~TextSegLib.volume.Volume` (``array[i, j, k]`` + IJK→RAS) without a file:
:func:`to_model` and its exact inverse :func:`to_source` move voxels, never
interpolate them, so a mask goes back voxel for voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...engine.resample import ras_axes
from ...volume import Volume

#: VoxTell's array axes, in terms of the RAS-ordered array: (S, A, R)
MODEL_ORDER = (2, 1, 0)


@dataclass(frozen=True)
class VoxTellGrid:
    """How the source array ``[i, j, k]`` becomes VoxTell's ``[s, a, r]`` array.

    ``perm[r]`` is the source axis feeding RAS axis ``r``; ``flip[r]`` says it runs backwards."""

    source_shape: tuple[int, int, int]
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def of(cls, volume: Volume) -> "VoxTellGrid":
        perm, flip = ras_axes(volume.direction)
        return cls(volume.shape, perm, flip)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the model array ``(S, A, R)``."""
        ras = tuple(self.source_shape[p] for p in self.perm)
        return tuple(ras[a] for a in MODEL_ORDER)  # type: ignore[return-value]

    def to_model(self, array: np.ndarray) -> np.ndarray:
        """Source ``[i, j, k]`` array -> VoxTell ``[s, a, r]`` array (a view where possible)."""
        if tuple(array.shape[:3]) != self.source_shape:
            raise ValueError(f"array shape {array.shape} is not the grid's source shape {self.source_shape}")
        ras = np.transpose(array, self.perm)
        ras = ras[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        return np.transpose(ras, MODEL_ORDER)

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """VoxTell ``[s, a, r]`` array -> source ``[i, j, k]`` array (exact inverse of :meth:`to_model`)."""
        if tuple(array.shape[:3]) != self.shape:
            raise ValueError(f"array shape {array.shape} is not the model grid's shape {self.shape}")
        ras = np.transpose(array, MODEL_ORDER)  # (2, 1, 0) is its own inverse
        ras = ras[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        return np.ascontiguousarray(np.transpose(ras, np.argsort(self.perm)))

    def model_ijk_to_ras(self, volume: Volume) -> np.ndarray:
        """IJK→RAS of the model array (its index order ``[s, a, r]``), for reports and tests."""
        m = volume.ijk_to_ras
        cols = []
        origin = m[:3, 3].copy()
        for r in range(3):
            src = self.perm[r]
            col = m[:3, src].copy()
            if self.flip[r]:
                origin = origin + col * (self.source_shape[src] - 1)
                col = -col
            cols.append(col)
        out = np.eye(4)
        for out_axis, r in enumerate(MODEL_ORDER):
            out[:3, out_axis] = cols[r]
        out[:3, 3] = origin
        return out


def roi_index_box(volume: Volume, roi_ras) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """Half-open source index box ``(start, end)`` holding the RAS box ``roi_ras`` (``None``: empty)."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in roi_ras)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = volume.ras_to_ijk_points(corners)
    start = np.clip(np.floor(ijk.min(0) + 0.5).astype(int), 0, np.asarray(volume.shape))
    end = np.clip(np.floor(ijk.max(0) + 0.5).astype(int) + 1, 0, np.asarray(volume.shape))
    if np.any(end <= start):
        return None
    return tuple(int(v) for v in start), tuple(int(v) for v in end)  # type: ignore[return-value]
