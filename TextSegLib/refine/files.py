"""Reading an image and a label/segmentation file for ``textseg refine``.

Uses :func:`TextSegLib.io.read_volume` when the I/O package provides it,
otherwise SimpleITK directly (LPS file geometry converted to RAS).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError, OutputPathError
from ..volume import Volume, make_ijk_to_ras

_LPS = np.diag([-1.0, -1.0, 1.0])


def _sitk_read(path: Path):
    import SimpleITK as sitk

    if not path.exists():
        raise InputFileError(f"{path}: file not found.", "Check the path.")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise InputFileError(
            f"{path}: cannot be read as an image ({first}).",
            "Use NIfTI (.nii/.nii.gz), NRRD (.nrrd/.seg.nrrd) or MetaImage (.mha).",
        ) from None


def _sitk_to_volume(img, name: str) -> Volume:
    import SimpleITK as sitk

    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputFileError(
            f"{name}: {img.GetDimension()}D image with {img.GetNumberOfComponentsPerPixel()} component(s); "
            "a 3D scalar image is needed.",
            "For a multi-layer .seg.nrrd, export a labelmap first.",
        )
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = _LPS @ np.asarray(img.GetDirection(), float).reshape(3, 3)
    origin = _LPS @ np.asarray(img.GetOrigin(), float)
    return Volume(arr, make_ijk_to_ras(img.GetSpacing(), origin, direction), name=name)


def read_image(path: str | Path) -> Volume:
    """Read a scan as a :class:`Volume` (I/O package first, SimpleITK fallback)."""
    try:
        from ..io.volumes import read_volume
    except ImportError:  # the I/O package is optional here
        read_volume = None
    if read_volume is not None:
        try:
            return read_volume(str(path))
        except ImportError:  # an I/O module still missing: fall back below
            pass
    p = Path(path)
    return _sitk_to_volume(_sitk_read(p), p.name)


def read_mask(path: str | Path, image: Volume, label: int | None = None, names: dict[int, str] | None = None):
    """Read a label file on ``image``'s grid; returns ``(bool mask, labels, sitk image)``.

    ``label`` selects one value of a multi-label map; a file with a single
    non-zero value needs none. ``names`` (label -> segment name) names the labels in messages.
    """
    names = names or {}

    def listed(values: list[int], n: int) -> str:
        return ", ".join(f"{v} ({names[v]})" if v in names else str(v) for v in values[:n])

    p = Path(path)
    img = _sitk_read(p)
    vol = _sitk_to_volume(img, p.name)
    if vol.shape != image.shape or not np.allclose(vol.ijk_to_ras, image.ijk_to_ras, atol=1e-3):
        raise InputFileError(
            f"{p}: mask grid {vol.shape} does not match the image grid {image.shape} "
            "(size, spacing, origin and orientation must agree).",
            "Resample the mask onto the image first.",
        )
    values = np.unique(vol.array)
    nonzero = [int(v) for v in values if v != 0]
    if label is None:
        if len(nonzero) > 1:
            raise InputFileError(
                f"{p}: contains {len(nonzero)} labels ({listed(nonzero, 10)}"
                f"{', ...' if len(nonzero) > 10 else ''}).",
                "Choose one with --label N.",
            )
        return vol.array != 0, vol.array, img
    if label not in nonzero:
        raise InputFileError(
            f"{p}: label {label} is not present (labels: {listed(nonzero, 20) or 'none'}).",
            "Pick one of the listed labels.",
        )
    return vol.array == label, vol.array, img


def write_labels(path: str | Path, labels: np.ndarray, reference, overwrite: bool = False) -> None:
    """Write a label array ``[i, j, k]`` with the geometry of the sitk image ``reference``."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.parent.exists():
        raise OutputPathError(f"{p}: folder {p.parent} does not exist.", "Create it or choose another path.")
    if p.exists() and not overwrite:
        raise OutputPathError(f"{p}: already exists.", "Choose a new output path or pass --overwrite.")
    out = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    out.CopyInformation(reference)
    try:
        sitk.WriteImage(out, str(p), useCompression=True)
    except RuntimeError as exc:
        raise OutputPathError(f"{p}: cannot be written ({str(exc).strip()[-150:]}).",
                              "Check the extension (.nii.gz, .nrrd) and permissions.") from None
