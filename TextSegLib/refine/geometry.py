"""Points, boxes and regions of interest for mask refinement.

Everything here works in voxel index space ``[i, j, k]`` of a
:class:`~TextSegLib.volume.Volume` once inputs are converted. Boxes are
given as two opposite corners (RAS millimetres by default); a box that is
flat along one axis (a rectangle drawn on one slice) is a *slice box*.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import TextSegError
from ..volume import Volume

POINT_SPACES = ("ras", "ijk")


class RefineInputError(TextSegError):
    """A point, box, mask or option given to :func:`refine` is not usable."""


@dataclass(frozen=True)
class Region:
    """An axis-aligned block of voxels: ``start`` inclusive, ``stop`` exclusive."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def union(self, other: "Region") -> "Region":
        return Region(
            tuple(min(a, b) for a, b in zip(self.start, other.start)),  # type: ignore[arg-type]
            tuple(max(a, b) for a, b in zip(self.stop, other.stop)),  # type: ignore[arg-type]
        )

    def local(self, ijk: np.ndarray) -> np.ndarray:
        """Convert global voxel indices to indices inside this block."""
        return np.asarray(ijk, dtype=np.int64) - np.asarray(self.start)


def merge_regions(a: Region | None, b: Region | None) -> Region | None:
    """The block holding both (either may be None: nothing)."""
    if a is None:
        return b
    return a if b is None else a.union(b)


@dataclass(frozen=True)
class VoxelBox:
    """A user box on the voxel grid: its bounding block and the voxels inside it.

    ``inside`` is a bool array of ``region.shape`` (voxel centres within the
    box); ``flat_axis`` is the IJK axis the box is one voxel thick along
    (a slice box) or ``None`` for a 3D box.
    """

    region: Region
    inside: np.ndarray
    flat_axis: int | None


def fmt(p: Sequence[float]) -> str:
    """``(1.5, 2, -3)``: a point for messages."""
    return "(" + ", ".join(f"{float(v):.6g}" for v in p) + ")"


def _as_points(points: Iterable[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(list(points) if not isinstance(points, np.ndarray) else points, dtype=object)
    if arr.size == 0:
        return np.zeros((0, 3))
    try:
        arr = np.asarray(arr.tolist(), dtype=np.float64)
    except (TypeError, ValueError):
        raise RefineInputError(
            f"{what}: could not read the points as numbers.",
            "Give each point as three numbers (x, y, z).",
        ) from None
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise RefineInputError(
            f"{what}: expected a list of 3D points, got an array of shape {arr.shape}.",
            "Give each point as three numbers (x, y, z).",
        )
    if not np.all(np.isfinite(arr)):
        raise RefineInputError(f"{what}: a coordinate is NaN or infinite.", "Use finite numbers.")
    return arr


def check_space(points_space: str) -> str:
    space = str(points_space).lower()
    if space not in POINT_SPACES:
        raise RefineInputError(
            f"points_space={points_space!r} is not supported.", "Use 'ras' or 'ijk'."
        )
    return space


def points_to_ijk(
    volume: Volume, points: Iterable[Sequence[float]], space: str, what: str
) -> np.ndarray:
    """Nearest voxel index (N×3 int) for each point; error if one is outside the volume."""
    pts = _as_points(points, what)
    if len(pts) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    cont = pts if space == "ijk" else volume.ras_to_ijk_points(pts)
    ijk = np.floor(cont + 0.5).astype(np.int64)
    shape = np.asarray(volume.shape)
    bad = np.any((ijk < 0) | (ijk >= shape), axis=1)
    if np.any(bad):
        n = int(np.argmax(bad))
        unit = "IJK" if space == "ijk" else "RAS mm"
        raise RefineInputError(
            f"{what} #{n + 1} at {fmt(pts[n])} ({unit}) is outside the volume "
            f"{volume.name or ''} (voxel {tuple(int(v) for v in ijk[n])}, grid {volume.shape}).".replace(" ()", ""),
            "Place the point on the image." + ("" if space == "ijk" else
            " If these are voxel indices, pass points_space='ijk' (CLI: --ijk)."),
        )
    return ijk


def box_to_voxels(volume: Volume, box: Sequence[Sequence[float]], space: str, n: int) -> VoxelBox:
    """Voxels whose centres lie inside a box given by two opposite corners."""
    what = f"box #{n + 1}"
    corners = _as_points(box, what)
    if corners.shape != (2, 3):
        raise RefineInputError(
            f"{what}: expected two corners (min and max) of 3 numbers each, got {corners.shape[0]} point(s).",
            "Give a box as (x0, y0, z0, x1, y1, z1).",
        )
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    if space == "ijk":
        to_cont = lambda p: p  # noqa: E731
        tol = np.full(3, 0.5)
    else:
        to_cont = volume.ras_to_ijk_points
        # half the voxel's extent along each RAS axis: lets a flat box pick one slice
        tol = 0.5 * np.abs(volume.ijk_to_ras[:3, :3]).max(axis=1)
    flat = (hi - lo) <= 1e-6  # zero thickness along an axis
    n_flat = int(np.count_nonzero(flat))
    if n_flat >= 2:
        raise RefineInputError(
            f"{what} from {fmt(lo)} to {fmt(hi)} is a line or a point, not a box.",
            "Drag a rectangle (a box may be flat along one axis only).",
        )
    lo_t, hi_t = lo - np.where(flat, tol, 0), hi + np.where(flat, tol, 0)
    grid = np.stack(np.meshgrid(*[[a, b] for a, b in zip(lo_t, hi_t)], indexing="ij"), -1).reshape(-1, 3)
    cont = np.atleast_2d(to_cont(grid))
    start = np.maximum(np.ceil(cont.min(axis=0) - 1e-6).astype(np.int64), 0)
    stop = np.minimum(np.floor(cont.max(axis=0) + 1e-6).astype(np.int64) + 1, np.asarray(volume.shape))
    if np.any(stop <= start):
        raise RefineInputError(
            f"{what} from {fmt(lo)} to {fmt(hi)} does not overlap the volume "
            f"(grid {volume.shape}).",
            "Draw the box on the image.",
        )
    region = Region(tuple(int(v) for v in start), tuple(int(v) for v in stop))  # type: ignore[arg-type]
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(start, stop)], indexing="ij"), -1)
    pos = idx.reshape(-1, 3).astype(np.float64)
    pos = pos if space == "ijk" else volume.ijk_to_ras_points(pos)
    inside = np.all((pos >= lo_t - 1e-6) & (pos <= hi_t + 1e-6), axis=1).reshape(region.shape)
    if not inside.any():
        raise RefineInputError(
            f"{what} from {fmt(lo)} to {fmt(hi)} contains no voxel centre.",
            "Draw a larger box.",
        )
    thick = [int(np.count_nonzero(inside.any(axis=tuple(a for a in range(3) if a != ax)))) for ax in range(3)]
    flat_axis = next((ax for ax in range(3) if thick[ax] == 1), None) if n_flat == 1 else None
    return VoxelBox(region, inside, flat_axis)


def roi_around(
    volume: Volume, ijk_points: np.ndarray, margin_mm: float, extra: Region | None = None
) -> Region:
    """Block of voxels within ``margin_mm`` (per axis) of the points, plus ``extra``."""
    spacing = volume.spacing
    half = np.ceil(margin_mm / spacing).astype(np.int64)
    shape = np.asarray(volume.shape)
    region = extra
    for p in np.asarray(ijk_points, dtype=np.int64).reshape(-1, 3):
        r = Region(
            tuple(int(v) for v in np.maximum(p - half, 0)),  # type: ignore[arg-type]
            tuple(int(v) for v in np.minimum(p + half + 1, shape)),  # type: ignore[arg-type]
        )
        region = r if region is None else region.union(r)
    if region is None:
        raise RefineInputError("No point or box was given.", "Add at least one click or box.")
    return region


def changed_block(old: np.ndarray, new: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """``(start, stop)`` (stop exclusive) of the voxels that differ, or ``None``."""
    diff = old != new
    if not diff.any():
        return None
    start, stop = [], []
    for ax in range(3):
        hit = np.flatnonzero(diff.any(axis=tuple(a for a in range(3) if a != ax)))
        start.append(int(hit[0]))
        stop.append(int(hit[-1]) + 1)
    return tuple(start), tuple(stop)  # type: ignore[return-value]
