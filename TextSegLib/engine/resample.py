"""The model grid: a source volume reoriented to RAS axes, resampled to a
target spacing and (optionally) cropped, with its exact inverse.

The mapping follows SAT's reference preprocessing (MONAI ``Orientation`` to
RAS, then ``Spacing``): the array axes are permuted/flipped to the nearest
R, A, S directions (no interpolation, oblique directions are kept), then
each axis is resampled with trilinear interpolation at

    source index = model index × new_spacing / old_spacing

with the origin (centre of voxel 0) kept and an extent of
``round((n - 1) · old / new + 1)`` voxels. Border voxels are replicated.

Everything is separable per axis, so the forward and inverse mappings are
exact (no accumulated matrix error) and a grid with the source spacing is a
pure reorientation: a label map goes there and back voxel-exactly.
SimpleITK is used to describe the grids as images (``to_sitk_reference``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import numpy as np

from ..errors import GeometryError, VolumeTooLargeError
from ..volume import Volume, max_voxels


# -- orientation -------------------------------------------------------------------
def ras_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For output axes (R, A, S): which source array axis feeds each one and
    whether it runs backwards. Greedy on the largest direction cosine."""
    d = np.abs(np.asarray(direction, dtype=np.float64))
    perm = [-1, -1, -1]
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for _ in range(3):
        best = (-1.0, -1, -1)
        for r in range(3):
            if r in used_rows:
                continue
            for c in range(3):
                if c not in used_cols and d[r, c] > best[0]:
                    best = (d[r, c], r, c)
        _, r, c = best
        perm[r] = c
        used_rows.add(r)
        used_cols.add(c)
    flip = tuple(bool(direction[r, perm[r]] < 0) for r in range(3))
    return tuple(perm), flip  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelGrid:
    """Where the model's voxels are, relative to one source volume.

    ``perm``/``flip`` reorient the source array to RAS axis order; ``scale``
    is new_spacing / old_spacing per (reoriented) axis; ``shape`` and
    ``ijk_to_ras`` describe the full resampled grid; ``crop_start`` and
    ``crop_end`` (half-open) select the part the model sees.
    """

    source_shape: tuple[int, int, int]
    source_ijk_to_ras: np.ndarray
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    scale: tuple[float, float, float]
    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray
    crop_start: tuple[int, int, int] = (0, 0, 0)
    crop_end: tuple[int, int, int] | None = None

    # -- derived geometry ------------------------------------------------------
    @property
    def reoriented_shape(self) -> tuple[int, int, int]:
        return tuple(self.source_shape[p] for p in self.perm)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def crop_stop(self) -> tuple[int, int, int]:
        return tuple(self.crop_end) if self.crop_end is not None else tuple(self.shape)  # type: ignore[return-value]

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        return tuple(int(e - s) for s, e in zip(self.crop_start, self.crop_stop))  # type: ignore[return-value]

    @property
    def cropped_ijk_to_ras(self) -> np.ndarray:
        m = self.ijk_to_ras.copy()
        m[:3, 3] = self.ijk_to_ras[:3, :3] @ np.asarray(self.crop_start, float) + self.ijk_to_ras[:3, 3]
        return m

    def with_crop(self, start: Sequence[int], end: Sequence[int]) -> "ModelGrid":
        """A grid restricted to ``[start, end)`` of the full resampled grid."""
        s = tuple(int(v) for v in start)
        e = tuple(int(v) for v in end)
        if any(a < 0 or b > n or a >= b for a, b, n in zip(s, e, self.shape)):
            raise GeometryError(
                f"Crop box {s}..{e} is empty or outside the model grid {self.shape}.",
                "Pass a box inside the grid with start < end on every axis.",
            )
        return replace(self, crop_start=s, crop_end=e)

    def model_to_source_index(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous source-array indices of cropped-model-grid indices (N×3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64)) + np.asarray(self.crop_start)
        reo = ijk * np.asarray(self.scale)
        src = np.empty_like(reo)
        for r in range(3):
            n = self.reoriented_shape[r]
            src[:, self.perm[r]] = (n - 1 - reo[:, r]) if self.flip[r] else reo[:, r]
        return src

    def ras_box_to_index_box(
        self, ras_min: Sequence[float], ras_max: Sequence[float]
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Half-open cropped-grid index box covering an RAS box (clipped to the grid).

        Raises :class:`GeometryError` when the box misses the grid.
        """
        lo = np.asarray(ras_min, float)
        hi = np.asarray(ras_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(np.r_[lo, hi])):
            raise GeometryError(
                f"ROI box {ras_min}..{ras_max} is not two finite RAS points.",
                "Pass the ROI as ((R, A, S) minimum, (R, A, S) maximum) in millimetres.",
            )
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        inv = np.linalg.inv(self.cropped_ijk_to_ras)
        ijk = corners @ inv[:3, :3].T + inv[:3, 3]
        start = np.maximum(np.floor(ijk.min(axis=0)), 0).astype(int)
        stop = np.minimum(np.ceil(ijk.max(axis=0)) + 1, self.cropped_shape).astype(int)
        if np.any(stop <= start):
            m = self.cropped_ijk_to_ras
            ends = np.array([[a, b, c] for a in (0, self.cropped_shape[0] - 1) for b in (0, self.cropped_shape[1] - 1)
                             for c in (0, self.cropped_shape[2] - 1)], float) @ m[:3, :3].T + m[:3, 3]
            fmt = lambda v: "(" + ", ".join(f"{x:.1f}" for x in v) + ")"  # noqa: E731
            raise GeometryError(
                f"ROI box {fmt(lo)}..{fmt(hi)} (RAS mm) does not overlap the scan's body region "
                f"{fmt(ends.min(0))}..{fmt(ends.max(0))}.",
                "Place the ROI over the image or segment without an ROI.",
            )
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)  # type: ignore[return-value]

    def to_sitk_reference(self):
        """A SimpleITK image (LPS, zeros) with the cropped model grid's geometry."""
        import SimpleITK as sitk

        m = self.cropped_ijk_to_ras
        lps = np.diag([-1.0, -1.0, 1.0])
        spacing = self.spacing
        direction = lps @ (m[:3, :3] / spacing)
        img = sitk.Image([int(v) for v in self.cropped_shape], sitk.sitkUInt8)
        img.SetSpacing([float(v) for v in spacing])
        img.SetOrigin([float(v) for v in lps @ m[:3, 3]])
        img.SetDirection([float(v) for v in direction.ravel()])
        return img


def _check_grid_size(volume: Volume, spacing: np.ndarray, shape: np.ndarray) -> None:
    """Refuse a model grid above the voxel limit before anything is allocated (a tiny scan with
    500 mm voxels would otherwise be resampled into tens of gigabytes)."""
    n = float(np.prod(shape))
    if n > max_voxels():
        raise VolumeTooLargeError(
            f"{volume.name or 'volume'}: resampling it to the model's spacing {' x '.join(f'{s:g}' for s in spacing)} "
            f"mm would make a grid of {n:,.0f} voxels ({' x '.join(f'{s:.0f}' for s in shape)}), above the limit "
            f"of {max_voxels():,}; its spacing {' x '.join(f'{s:g}' for s in volume.spacing)} mm or field of view "
            "is implausible.",
            "Check the spacing in the scan's header, or crop the scan (or raise TEXTSEG_MAX_VOXELS).")


def make_grid(volume: Volume, spacing: Sequence[float] | None) -> ModelGrid:
    """The (uncropped) model grid for ``volume`` at ``spacing`` (RAS axis order, mm);
    ``None`` keeps the source spacing."""
    perm, flip = ras_axes(volume.direction)
    src = volume.ijk_to_ras
    old = volume.spacing[list(perm)]
    new = old.copy() if spacing is None else np.asarray(spacing, dtype=np.float64)
    if new.shape != (3,) or not np.all(np.isfinite(new)) or np.any(new <= 0):
        raise GeometryError(
            f"Model spacing {spacing!r} is invalid.",
            "Give three positive spacings in millimetres, e.g. (1, 1, 3).",
        )
    n = np.asarray(volume.shape)[list(perm)]
    reo = np.eye(4)
    origin = src[:3, 3].copy()
    for r in range(3):
        col = src[:3, perm[r]]
        if flip[r]:
            origin = origin + (n[r] - 1) * col
            col = -col
        reo[:3, r] = col
    reo[:3, 3] = origin
    scale = new / old
    shape = np.maximum(np.round((n - 1) / scale + 1), 1)
    _check_grid_size(volume, new, shape)
    shape = shape.astype(int)
    out = reo.copy()
    out[:3, :3] = reo[:3, :3] * scale
    return ModelGrid(
        source_shape=volume.shape,
        source_ijk_to_ras=src.copy(),
        perm=perm,
        flip=flip,
        scale=tuple(float(s) for s in scale),  # type: ignore[arg-type]
        shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        ijk_to_ras=out,
    )


# -- separable 1-D resampling -------------------------------------------------------
def _lerp_axis(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` at positions ``pos`` (clamped to the array)."""
    n = a.shape[axis]
    p = np.clip(pos, 0, n - 1)
    i0 = np.floor(p).astype(np.intp)
    i0 = np.minimum(i0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (p - i0).astype(a.dtype if a.dtype.kind == "f" else np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(pos)
    w = w.reshape(shape)
    if np.all(w == 0):
        return np.take(a, i0, axis=axis)
    lo = np.take(a, i0, axis=axis)
    hi = np.take(a, i1, axis=axis)
    return lo + (hi - lo) * w


def _nearest_axis(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    idx = np.clip(np.floor(pos + 0.5), 0, a.shape[axis] - 1).astype(np.intp)
    return np.take(a, idx, axis=axis)


def reorient(array: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Source array → RAS axis order (a view; no interpolation)."""
    a = np.transpose(array, grid.perm)
    for r in range(3):
        if grid.flip[r]:
            a = np.flip(a, axis=r)
    return a


def unreorient(array: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Inverse of :func:`reorient`."""
    a = array
    for r in range(3):
        if grid.flip[r]:
            a = np.flip(a, axis=r)
    return np.transpose(a, np.argsort(grid.perm))


def to_model_grid(
    volume: Volume,
    spacing: Sequence[float] | None,
    interpolation: Literal["linear", "nearest"] = "linear",
    dtype: np.dtype = np.float32,
) -> tuple[np.ndarray, ModelGrid]:
    """Resample ``volume`` onto its (uncropped) model grid; returns ``(array, grid)``."""
    if interpolation not in ("linear", "nearest"):
        raise GeometryError(
            f"Unknown interpolation {interpolation!r}.", "Use 'linear' or 'nearest'."
        )
    grid = make_grid(volume, spacing)
    a = reorient(volume.array, grid)
    a = a.astype(dtype, copy=False) if interpolation == "linear" else a
    for r in range(3):
        if grid.shape[r] == a.shape[r] and grid.scale[r] == 1.0:
            continue
        pos = np.arange(grid.shape[r], dtype=np.float64) * grid.scale[r]
        a = _lerp_axis(a, pos, r) if interpolation == "linear" else _nearest_axis(a, pos, r)
    return np.ascontiguousarray(a), grid


def _pad_axis(a: np.ndarray, axis: int, lo_fill: bool, hi_fill: bool, fill: float) -> np.ndarray:
    """One extra slice on each side of ``axis``: ``fill`` or a copy of the edge."""
    def edge(i: int, use_fill: bool) -> np.ndarray:
        s = np.take(a, [i], axis=axis)
        return np.full_like(s, fill) if use_fill else s

    return np.concatenate([edge(0, lo_fill), a, edge(a.shape[axis] - 1, hi_fill)], axis=axis)


def to_source_grid(
    array: np.ndarray,
    grid: ModelGrid,
    source_volume: Volume | None = None,
    kind: Literal["mask", "prob"] = "mask",
    fill: float = 0.0,
) -> np.ndarray:
    """Map an array on the cropped model grid back onto the source grid.

    ``kind='mask'`` uses nearest neighbour (labels, bools); ``kind='prob'``
    uses trilinear interpolation and returns float32. Source voxels outside
    the crop box get ``fill``. The result has exactly ``grid.source_shape``.
    """
    if kind not in ("mask", "prob"):
        raise GeometryError(f"Unknown kind {kind!r}.", "Use 'mask' or 'prob'.")
    if tuple(array.shape) != grid.cropped_shape:
        raise GeometryError(
            f"Array of shape {tuple(array.shape)} is not on the model grid {grid.cropped_shape}.",
            "Pass the model's output for this volume's grid.",
        )
    if source_volume is not None and not (
        source_volume.shape == tuple(grid.source_shape)
        and np.allclose(source_volume.ijk_to_ras, grid.source_ijk_to_ras, atol=1e-6)
    ):
        raise GeometryError(
            f"{source_volume.name or 'volume'}: geometry differs from the volume this grid was made for.",
            "Map results back onto the same volume that was segmented.",
        )
    a = array.astype(np.float32, copy=False) if kind == "prob" else array
    stop = grid.crop_stop
    n_reo = grid.reoriented_shape
    for r in range(3):
        lo_fill = grid.crop_start[r] > 0
        hi_fill = stop[r] < grid.shape[r]
        pos = np.arange(n_reo[r], dtype=np.float64) / grid.scale[r] - grid.crop_start[r] + 1.0
        if not (grid.scale[r] == 1.0 and grid.crop_start[r] == 0 and stop[r] == grid.shape[r] == n_reo[r]):
            padded = _pad_axis(a, r, lo_fill, hi_fill, fill)
            a = _lerp_axis(padded, pos, r) if kind == "prob" else _nearest_axis(padded, pos, r)
    return np.ascontiguousarray(unreorient(a, grid))


def source_mask_from_prob(
    prob: np.ndarray, grid: ModelGrid, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, prob)`` on the source grid: probabilities interpolated linearly,
    then thresholded (``prob > threshold``)."""
    p = to_source_grid(prob, grid, kind="prob")
    return p > threshold, p
