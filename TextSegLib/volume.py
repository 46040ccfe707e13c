"""The one volume type: a 3D array plus its exact IJK→RAS geometry.

Conventions (used everywhere in TextSegLib):

* ``array`` is indexed ``[i, j, k]`` (the first axis is I, the fastest axis
  on disk). This is the transpose of SimpleITK's and Slicer's numpy views,
  which are ``[k, j, i]``.
* ``ijk_to_ras`` is a 4×4 matrix mapping voxel indices (of voxel centres)
  to patient RAS millimetres, as in Slicer. Its 3×3 block is
  ``direction @ diag(spacing)``, with unit direction columns.
* ``modality`` is one of ``"ct"``, ``"mri"``, ``"pet"`` or ``""`` (unknown).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import GeometryError, InputFileError, VolumeTooLargeError

MODALITIES = ("ct", "mri", "pet")

#: Default upper bound on voxels; configurable via ``TEXTSEG_MAX_VOXELS``.
DEFAULT_MAX_VOXELS = 1024 * 1024 * 1024


def max_voxels() -> int:
    import os

    value = os.environ.get("TEXTSEG_MAX_VOXELS")
    if not value:
        return DEFAULT_MAX_VOXELS
    try:
        return int(float(value))
    except ValueError:
        raise GeometryError(
            f"TEXTSEG_MAX_VOXELS={value!r} is not a number.",
            "Set it to a voxel count such as 500000000, or unset it.",
        ) from None


def normalize_modality(modality: str | None) -> str:
    """Map loose spellings ('CT', 'MR', 'mr', 'PT') to 'ct' / 'mri' / 'pet' / ''."""
    if not modality:
        return ""
    m = modality.strip().lower()
    aliases = {"ct": "ct", "mr": "mri", "mri": "mri", "pt": "pet", "pet": "pet"}
    if m not in aliases:
        raise GeometryError(
            f"Unknown modality {modality!r}.", "Use one of: ct, mri, pet."
        )
    return aliases[m]


def make_ijk_to_ras(
    spacing: np.ndarray | tuple, origin: np.ndarray | tuple, direction: np.ndarray
) -> np.ndarray:
    """Compose the 4×4 IJK→RAS matrix from spacing, origin (RAS) and RAS direction."""
    spacing = np.asarray(spacing, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction, dtype=np.float64) @ np.diag(spacing)
    m[:3, 3] = np.asarray(origin, dtype=np.float64)
    return m


#: Voxel spacing and field of view a scan can have (mm); outside them the header is wrong.
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 100.0
MAX_EXTENT_MM = 5000.0
#: Float voxels beyond this magnitude are no scan (HU, MR signal, SUV, Bq/ml are all far below).
MAX_ABS_VALUE = 1e10


def check_plausible_geometry(volume: "Volume") -> None:
    """Refuse a spacing or field of view no scan has (e.g. 500 mm voxels, 1e-6 mm slices): such a
    header would make every volume wrong, and resampling it to a model grid would need gigabytes."""
    src = volume.name or "volume"
    spacing = volume.spacing
    extent = spacing * np.asarray(volume.shape)
    shown = " x ".join(f"{s:g}" for s in spacing)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise GeometryError(
            f"{src}: voxel spacing {shown} mm is not that of a scan (each must be {MIN_SPACING_MM:g} to "
            f"{MAX_SPACING_MM:g} mm).",
            "Fix the spacing in the header (DICOM: PixelSpacing and the slice positions), or resample the scan.")
    if np.any(extent > MAX_EXTENT_MM):
        raise GeometryError(
            f"{src}: the field of view {' x '.join(f'{e:g}' for e in extent)} mm is larger than any patient "
            f"(at most {MAX_EXTENT_MM:g} mm per axis; spacing {shown} mm).",
            "Fix the spacing in the header, or crop the scan.")


def validate_geometry(ijk_to_ras: np.ndarray, source: str = "volume") -> None:
    """Raise :class:`GeometryError` if the matrix cannot describe a scan."""
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4):
        raise GeometryError(f"{source}: IJK→RAS matrix has shape {m.shape}, expected 4×4.")
    if not np.all(np.isfinite(m)):
        raise GeometryError(
            f"{source}: geometry contains NaN or Inf.", "Check the file header."
        )
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0) or np.any(~np.isfinite(spacing)):
        raise GeometryError(
            f"{source}: voxel spacing {tuple(np.round(spacing, 6))} has a zero or negative value.",
            "Fix the spacing in the file header (all three must be > 0).",
        )
    direction = m[:3, :3] / spacing
    det = np.linalg.det(direction)
    if abs(det) < 1e-3:
        raise GeometryError(
            f"{source}: direction matrix is singular (determinant {det:.3g}).",
            "The image axes must be independent; fix the header's direction cosines.",
        )


@dataclass
class Volume:
    """A scalar 3D image with exact geometry. See the module docstring."""

    array: np.ndarray
    ijk_to_ras: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str = ""
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)
        self.modality = normalize_modality(self.modality)
        self.validate()

    # -- checks -----------------------------------------------------------------
    def validate(self, check_values: bool = False) -> None:
        src = self.name or "volume"
        a = self.array
        if not isinstance(a, np.ndarray):
            raise InputFileError(f"{src}: image data is a {type(a).__name__}, not a numpy array.")
        if a.ndim != 3:
            raise InputFileError(
                f"{src}: image has {a.ndim} dimension(s) with shape {a.shape}; TextSeg needs one 3D scalar volume.",
                "Pass a 3D scan (for a 4D or multi-component image, extract one 3D frame first).",
            )
        if min(a.shape) < 1:
            raise InputFileError(f"{src}: image is empty (shape {a.shape}).")
        if a.dtype.kind not in "biuf":
            raise InputFileError(
                f"{src}: voxel type {a.dtype} is not a real scalar.",
                "Convert the image to a scalar integer or float type.",
            )
        if a.size > max_voxels():
            raise VolumeTooLargeError(
                f"{src}: {a.size:,} voxels ({a.shape}) exceed the limit of {max_voxels():,}.",
                "Crop or downsample the scan, or raise TEXTSEG_MAX_VOXELS.",
            )
        validate_geometry(self.ijk_to_ras, src)
        if check_values and a.dtype.kind == "f" and a.size:
            if not np.all(np.isfinite(a)):
                bad = int(np.count_nonzero(~np.isfinite(a)))
                raise InputFileError(
                    f"{src}: {bad:,} voxel(s) are NaN or Inf.",
                    "Replace them (e.g. with the background value) before segmenting.",
                )
            peak = float(max(abs(float(a.min())), abs(float(a.max()))))
            if peak > MAX_ABS_VALUE:
                raise InputFileError(
                    f"{src}: voxel values reach {peak:.3g}, far beyond any scan's range (|value| ≤ {MAX_ABS_VALUE:.0e}); "
                    f"the voxel type in the header ({a.dtype}) probably does not match the stored bytes.",
                    "Check the data type in the header, or export the scan again.",
                )

    # -- geometry ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS position of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3×3 RAS direction cosines (columns are the I, J, K axes)."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras)

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras: np.ndarray) -> np.ndarray:
        ras = np.atleast_2d(np.asarray(ras, dtype=np.float64))
        inv = self.ras_to_ijk
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def same_geometry(self, other: "Volume", atol: float = 1e-6) -> bool:
        return self.shape == other.shape and np.allclose(
            self.ijk_to_ras, other.ijk_to_ras, atol=atol
        )

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """A new volume on the same grid with other voxels (e.g. a mask)."""
        return replace(self, array=array, meta=dict(self.meta), **changes)

    # -- Slicer numpy convention ------------------------------------------------
    def to_slicer(self) -> tuple[np.ndarray, np.ndarray]:
        """``(array_kji, ijk_to_ras)`` as ``slicer.util.arrayFromVolume`` and
        ``GetIJKToRASMatrix`` would give them."""
        return np.ascontiguousarray(self.array.transpose(2, 1, 0)), self.ijk_to_ras.copy()

    @classmethod
    def from_slicer(
        cls, array_kji: np.ndarray, ijk_to_ras: np.ndarray, modality: str = "", name: str = ""
    ) -> "Volume":
        return cls(np.asarray(array_kji).transpose(2, 1, 0), np.asarray(ijk_to_ras), modality, name)
