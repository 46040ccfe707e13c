"""Where a DICOM image plane lies on a voxel grid (shared by the DICOM SEG writer and reader).

A frame's pixel ``(row r, column c)`` sits at (DICOM PS3.3 C.7.6.2.1.1)::

    P_lps = ImagePositionPatient + c * PixelSpacing[1] * X + r * PixelSpacing[0] * Y

with ``X`` / ``Y`` the row / column direction cosines of ImageOrientationPatient.
:func:`plane_on_grid` turns that into voxel indices of a grid given by its
IJK→RAS matrix, and refuses planes that do not fall exactly on grid voxels
(instead of resampling them silently).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import GeometryError

_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
#: tolerance (in voxels) for a pixel centre to count as a voxel centre.
TOLERANCE = 0.01


@dataclass(frozen=True)
class Plane:
    """One DICOM image plane: position and orientation in LPS, spacing (row, column) in mm."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    spacing: tuple[float, float]
    rows: int
    columns: int

    def pixel_to_ras(self, r: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
        """RAS mm of pixel centres ``(r, c)`` (broadcast; result has a trailing axis of 3)."""
        o = np.asarray(self.orientation, dtype=np.float64)
        x, y = o[:3], o[3:]
        r = np.asarray(r, dtype=np.float64)[..., None]
        c = np.asarray(c, dtype=np.float64)[..., None]
        lps = np.asarray(self.position, dtype=np.float64) + c * self.spacing[1] * x + r * self.spacing[0] * y
        return lps * _LPS_TO_RAS


@dataclass(frozen=True)
class PlaneIndex:
    """Voxel index arrays of one plane on a grid: ``volume[index]`` is the ``(rows, columns)`` frame."""

    index: tuple[np.ndarray, np.ndarray, np.ndarray]
    axis: int = 2  # the grid axis the plane's normal runs along
    slice: int = 0  # the plane's index on that axis

    def take(self, volume: np.ndarray) -> np.ndarray:
        return volume[self.index]

    def put(self, volume: np.ndarray, frame: np.ndarray) -> None:
        volume[self.index] = frame


def plane_on_grid(plane: Plane, shape: Sequence[int], ijk_to_ras: np.ndarray, what: str = "frame") -> PlaneIndex:
    """Indices of ``plane``'s pixels in a grid; raises :class:`GeometryError` if it is off the grid."""
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    inv = np.linalg.inv(m)
    origin = inv[:3, :3] @ plane.pixel_to_ras(0, 0) + inv[:3, 3]
    step_c = inv[:3, :3] @ (plane.pixel_to_ras(0, 1) - plane.pixel_to_ras(0, 0))
    step_r = inv[:3, :3] @ (plane.pixel_to_ras(1, 0) - plane.pixel_to_ras(0, 0))
    axes = []
    for name, step in (("row", step_c), ("column", step_r)):
        axis = int(np.argmax(np.abs(step)))
        unit = np.zeros(3)
        unit[axis] = np.sign(step[axis])
        if np.abs(step - unit).max() > TOLERANCE:
            raise GeometryError(
                f"{what}: its {name} direction does not follow one axis of the segmentation grid one voxel per pixel "
                f"(step {np.round(step, 4).tolist()} voxels).",
                "The segmentation must be on the source series' own grid; do not resample it.")
        axes.append((axis, int(unit[axis])))
    (ax_c, s_c), (ax_r, s_r) = axes
    if ax_c == ax_r:
        raise GeometryError(f"{what}: its rows and columns run along the same grid axis.")
    ax_k = 3 - ax_c - ax_r
    rounded = np.round(origin)
    if np.abs(origin - rounded).max() > TOLERANCE:
        raise GeometryError(
            f"{what}: its first pixel lies between voxel centres (index {np.round(origin, 3).tolist()}).",
            "The segmentation must be on the source series' own grid; do not resample it.")
    o = rounded.astype(int)
    cols = o[ax_c] + s_c * np.arange(plane.columns)
    rows = o[ax_r] + s_r * np.arange(plane.rows)
    for axis, idx in ((ax_c, cols), (ax_r, rows), (ax_k, np.array([o[ax_k]]))):
        if idx.min() < 0 or idx.max() >= shape[axis]:
            raise GeometryError(f"{what}: reaches outside the segmentation grid (axis {'IJK'[axis]}, "
                                f"index {int(idx.min())}..{int(idx.max())} of 0..{shape[axis] - 1}).",
                                "The segmentation must cover the source series' whole grid.")
    index: list[np.ndarray] = [np.empty(0, int)] * 3
    index[ax_r] = rows[:, None]
    index[ax_c] = cols[None, :]
    index[ax_k] = np.full((1, 1), o[ax_k])
    return PlaneIndex(tuple(index), ax_k, int(o[ax_k]))  # type: ignore[arg-type]


def grid_of_planes(planes: Sequence[Plane], spacing_between: float | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
    """The smallest regular grid holding parallel ``planes``: I along columns, J along rows,
    K along the slice normal. Returns ``(shape, ijk_to_ras)``."""
    if not planes:
        raise GeometryError("no image planes to build a grid from.")
    p0 = planes[0]
    o = np.asarray(p0.orientation, dtype=np.float64)
    x, y = o[:3], o[3:]
    normal = np.cross(x, y)
    for p in planes:
        if np.abs(np.asarray(p.orientation) - o).max() > 1e-4 or (p.rows, p.columns) != (p0.rows, p0.columns):
            raise GeometryError("the frames have different orientations or sizes; they are not one grid.")
    dist = np.array([np.dot(p.position, normal) for p in planes])
    lo = float(dist.min())
    gaps = np.diff(np.unique(np.round(dist, 4)))
    dz = float(spacing_between) if spacing_between else (float(gaps.min()) if gaps.size else 1.0)
    if dz <= 0:
        dz = 1.0
    steps = (dist - lo) / dz
    if gaps.size and np.abs(steps - np.round(steps)).max() > TOLERANCE * 10:
        raise GeometryError("the frames are not evenly spaced along the slice normal; they are not one grid.")
    first = planes[int(np.argmin(dist))]
    m = np.eye(4)
    m[:3, 0] = x * p0.spacing[1] * _LPS_TO_RAS
    m[:3, 1] = y * p0.spacing[0] * _LPS_TO_RAS
    m[:3, 2] = normal * dz * _LPS_TO_RAS
    m[:3, 3] = np.asarray(first.position, dtype=np.float64) * _LPS_TO_RAS
    nk = int(round(float(steps.max()))) + 1
    return (p0.columns, p0.rows, nk), m
