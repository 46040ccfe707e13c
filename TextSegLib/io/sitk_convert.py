"""Lossless conversion between :class:`Volume` and SimpleITK images.

ITK stores geometry in LPS, TextSeg in RAS: the first two rows of the
direction matrix and the first two origin coordinates change sign.
ITK's numpy view is ``[k, j, i]``; ``Volume.array`` is ``[i, j, k]``.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputFileError
from ..volume import Volume, make_ijk_to_ras

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the volume's voxels and geometry (converted to LPS)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in volume.spacing))
    img.SetOrigin(tuple(float(v) for v in _LPS_RAS @ volume.origin))
    img.SetDirection(tuple(float(v) for v in (_LPS_RAS @ volume.direction).ravel()))
    return img


def from_sitk(img: sitk.Image, modality: str = "", name: str = "") -> Volume:
    """A :class:`Volume` from a 3D scalar SimpleITK image (geometry converted to RAS)."""
    src = name or "image"
    if img.GetDimension() != 3:
        raise InputFileError(
            f"{src}: image has {img.GetDimension()} dimensions (size {img.GetSize()}); TextSeg needs one 3D volume.",
            "Pass a 3D scan (extract one 3D frame from a 4D series first).",
        )
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputFileError(
            f"{src}: image has {img.GetNumberOfComponentsPerPixel()} components per voxel (e.g. RGB or a vector field); TextSeg needs a scalar image.",
            "Convert it to a single-channel (grayscale) volume first.",
        )
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = _LPS_RAS @ np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = _LPS_RAS @ np.asarray(img.GetOrigin(), dtype=np.float64)
    m = make_ijk_to_ras(img.GetSpacing(), origin, direction)
    return Volume(array, m, modality, name)
