"""SAT-style preprocessing: RAS reorientation, resampling to the model spacing,
crop to the foreground and intensity normalisation.

Numerically this follows the SAT reference inference preprocessing
(see ``Testing/Data/sat-reference/README.md``, "preprocess-ct"):

1. reorient to RAS and resample trilinearly to ``spacing`` (default 1×1×3 mm);
2. crop to the bounding box of voxels > 0 on the raw resampled intensities;
3. CT: clip to [-500, 1000]; MRI/PET: clip to the 0.5 / 99.5 percentiles;
4. z-score with float32 mean / std over the whole cropped volume.

The returned :class:`Preprocessed` keeps the :class:`ModelGrid` (reorientation,
resampling and crop) so results can be mapped back to the source grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np

from ..errors import GeometryError, InputFileError
from ..volume import Volume, normalize_modality
from .resample import ModelGrid, to_model_grid

Normalisation = Literal["auto", "ct", "percentile", "none"]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model wants its input. Defaults reproduce SAT's reference."""

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 3.0)
    normalisation: Normalisation = "auto"
    ct_window: tuple[float, float] = (-500.0, 1000.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    crop_foreground: bool = True
    foreground_threshold: float = 0.0
    #: body mask used to skip tiles: raw intensity above this (CT, HU) ...
    ct_body_threshold: float = -500.0
    #: ... or above this percentile of the non-zero voxels (MRI / PET).
    body_percentile: float = 5.0
    #: custom normalisation ``f(raw_cropped, modality) -> (X,Y,Z) or (C,X,Y,Z)``
    #: float32; replaces ``normalisation`` (e.g. several CT windows as channels).
    normaliser: Callable[[np.ndarray, str], np.ndarray] | None = field(default=None, compare=False)


@dataclass
class Preprocessed:
    """The model's input for one volume."""

    array: np.ndarray  # float32 (X,Y,Z) or (C,X,Y,Z) on the cropped model grid, normalised
    grid: ModelGrid
    body: np.ndarray  # bool, same shape: voxels that belong to the patient
    modality: str
    stats: dict = field(default_factory=dict)


def _normalise(
    a: np.ndarray, modality: str, config: PreprocessConfig
) -> tuple[np.ndarray, dict]:
    mode = config.normalisation
    if mode == "auto":
        mode = "ct" if modality == "ct" else "percentile"
    if mode == "none":
        return a.astype(np.float32, copy=False), {"normalisation": "none"}
    if mode == "ct":
        lo, hi = (float(v) for v in config.ct_window)
    elif mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(a, config.percentiles))
    else:
        raise GeometryError(
            f"Unknown normalisation {mode!r}.", "Use 'auto', 'ct', 'percentile' or 'none'."
        )
    out = np.clip(a, lo, hi).astype(np.float32, copy=False)
    mean = out.mean(dtype=np.float32)
    std = out.std(dtype=np.float32)
    if not np.isfinite(std) or std <= 0:
        std = np.float32(1.0)
    out = (out - mean) / std
    return out.astype(np.float32, copy=False), {
        "normalisation": mode,
        "clip_low": lo,
        "clip_high": hi,
        "mean": float(mean),
        "std": float(std),
    }


def body_mask(raw: np.ndarray, modality: str, config: PreprocessConfig) -> np.ndarray:
    """Voxels that look like patient (for skipping empty tiles)."""
    if modality == "ct":
        return raw > config.ct_body_threshold
    nz = raw[raw > 0]
    if nz.size == 0:
        return np.zeros(raw.shape, dtype=bool)
    return raw > np.percentile(nz, config.body_percentile)


def preprocess(
    volume: Volume,
    modality: str | None = None,
    config: PreprocessConfig | None = None,
) -> Preprocessed:
    """Reorient, resample, crop and normalise ``volume`` for the model."""
    config = config or PreprocessConfig()
    modality = normalize_modality(modality if modality is not None else volume.modality)
    if volume.array.dtype.kind == "f" and not np.all(np.isfinite(volume.array)):
        raise InputFileError(
            f"{volume.name or 'volume'}: contains NaN or Inf voxels.",
            "Replace them with the background value before segmenting.",
        )
    raw, grid = to_model_grid(volume, config.spacing, "linear")
    if config.crop_foreground:
        fg = raw > config.foreground_threshold
        if fg.any():
            idx = [np.flatnonzero(fg.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
            start = [int(i[0]) for i in idx]
            end = [int(i[-1]) + 1 for i in idx]
            grid = grid.with_crop(start, end)
            raw = raw[start[0]:end[0], start[1]:end[1], start[2]:end[2]]
    if config.normaliser is not None:
        array = np.asarray(config.normaliser(raw, modality), dtype=np.float32)
        stats: dict = {"normalisation": "custom"}
    else:
        array, stats = _normalise(raw, modality, config)
    body = body_mask(raw, modality, config)
    stats["crop_start"], stats["crop_end"] = grid.crop_start, grid.crop_stop
    return Preprocessed(np.ascontiguousarray(array), grid, body, modality, stats)


def parse_spacing(text: str | Sequence[float] | None) -> tuple[float, float, float] | None:
    """'1,1,3' / '3' / (1, 1, 3) → a 3-tuple; None or 'source' keeps the source spacing."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "source", "none")):
        return None
    try:
        vals = [float(v) for v in (text.replace("x", ",").split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise GeometryError(f"Spacing {text!r} is not a number list.", "Write e.g. 1,1,3 (mm).") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise GeometryError(f"Spacing {text!r} needs 1 or 3 positive numbers.", "Write e.g. 1,1,3 (mm).")
    return (vals[0], vals[1], vals[2])
