"""Intensity normalisation and model-grid preparation shared by training
and inference.

textseg-mini sees scans resampled by :mod:`TextSegLib.engine.resample`
(reorient to RAS, trilinear resampling to isotropic ``SPACING`` mm; the same
code the SAT engine uses) and normalised by :func:`normalize`. Training and
inference call exactly these functions.
"""
from __future__ import annotations

import numpy as np

from ...engine.resample import ModelGrid, to_model_grid
from ...volume import Volume

#: Input channels: two intensity channels + one lateral-position channel.
N_CHANNELS = 3
#: mm per unit of the lateral-position channel.
LATERAL_SCALE_MM = 100.0
#: Model grid spacing in mm (isotropic).
SPACING = 3.0


def prepare(volume: Volume, spacing: float = SPACING) -> tuple[np.ndarray, ModelGrid]:
    """``(raw_on_grid, grid)``: the scan resampled onto its model grid (float32)."""
    arr, grid = to_model_grid(volume, (spacing, spacing, spacing), "linear", np.float32)
    return arr, grid


def mask_to_grid(mask: np.ndarray, volume: Volume, spacing: float = SPACING) -> np.ndarray:
    """A boolean mask on ``volume``'s voxels resampled to the model grid (linear, >= 0.5)."""
    arr, _ = to_model_grid(volume.with_array(mask.astype(np.float32)), (spacing,) * 3, "linear", np.float32)
    return arr >= 0.5


def body_center_x(raw: np.ndarray, modality: str) -> float:
    """Mean R-L index (axis 0 of a RAS-ordered grid) of the patient's voxels."""
    fg = raw > (-300.0 if modality == "ct" else float(raw.mean()))
    counts = fg.sum(axis=(1, 2)).astype(np.float64)
    if counts.sum() == 0:
        return (raw.shape[0] - 1) / 2.0
    return float((np.arange(raw.shape[0]) * counts).sum() / counts.sum())


def lateral_channel(x_index: np.ndarray, center_x: float, spacing: float = SPACING) -> np.ndarray:
    """Signed R-L distance from the body's centre (units of 100 mm; + = patient right)."""
    return ((x_index - center_x) * (spacing / LATERAL_SCALE_MM)).astype(np.float32)


def intensity_channels(array: np.ndarray, modality: str) -> np.ndarray:
    """The two intensity channels (2, *shape) as float32.

    CT: HU clipped to [-1000, 1000] / 500 and a soft-tissue window
    [-160, 240] centred at 40 HU / 100. MRI/PET/unknown: clip to the
    0.5–99.5 percentiles of non-background voxels, z-score, both channels equal.
    """
    a = array.astype(np.float32, copy=False)
    if modality == "ct":
        wide = np.clip(a, -1000.0, 1000.0) / 500.0
        soft = (np.clip(a, -160.0, 240.0) - 40.0) / 100.0
        return np.stack([wide, soft]).astype(np.float32)
    fg = a[a > a.min()] if np.any(a > a.min()) else a.ravel()
    lo, hi = np.percentile(fg, [0.5, 99.5]) if fg.size else (0.0, 1.0)
    c = np.clip(a, lo, hi)
    mean, std = float(c.mean()), float(c.std()) or 1.0
    z = (c - mean) / std
    return np.stack([z, z]).astype(np.float32)


def normalize(array: np.ndarray, modality: str) -> np.ndarray:
    """Network input (N_CHANNELS, *shape) for a whole scan on its RAS model grid:
    :func:`intensity_channels` + :func:`lateral_channel` about the body's centre.
    Training crops sample exactly these channels (see ``augment.make_sample``)."""
    ch = intensity_channels(array, modality)
    x = lateral_channel(np.arange(array.shape[0], dtype=np.float32), body_center_x(array, modality))
    lat = np.broadcast_to(x[:, None, None], array.shape)
    return np.concatenate([ch, lat[None]]).astype(np.float32)
