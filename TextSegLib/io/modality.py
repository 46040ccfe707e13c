"""Guess whether a volume is CT, MRI or PET.

Order: the DICOM Modality tag (``volume.meta['Modality']``) when present;
otherwise intensity heuristics on a voxel sample:

* **CT**: values reach the air floor of Hounsfield units (the 0.5th
  percentile is at or below -500, the minimum not below -3100) and at least
  5% of voxels lie in the soft-tissue range -200..300 HU.
* **PET**: no negative values and either a small floating range typical of
  SUV (maximum ≤ 100) or a heavy upper tail (99.9th percentile more than 8
  times the 90th among non-zero voxels).
* **MRI**: everything else.

Limits: CT stored without its rescale (0..4095, air at 0) reads as MRI or
PET; PET in Bq/ml with little uptake can read as MRI; MRI maps of small
floats (e.g. ADC in mm²/s) can read as PET. Pass the modality explicitly
when it matters.
"""
from __future__ import annotations

import numpy as np

from ..volume import Volume

_TAG_TO_MODALITY = {"CT": "ct", "MR": "mri", "PT": "pet"}


def sample_voxels(array: np.ndarray, max_samples: int = 2_000_000) -> np.ndarray:
    """A strided (deterministic) sample of at most about ``max_samples`` voxels, as float64."""
    flat = array.reshape(-1)
    step = max(1, flat.size // max_samples)
    return flat[::step].astype(np.float64)


def guess_modality(volume: Volume) -> tuple[str, str]:
    """``(modality, reason)`` with modality in 'ct' / 'mri' / 'pet'."""
    tag = str(volume.meta.get("Modality", "")).strip().upper()
    if tag in _TAG_TO_MODALITY:
        return _TAG_TO_MODALITY[tag], f"DICOM Modality tag is {tag!r}"
    v = sample_voxels(volume.array)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "mri", "no finite voxels; defaulted to MRI"
    lo, p05, hi = float(v.min()), float(np.percentile(v, 0.5)), float(v.max())
    soft = float(np.mean((v >= -200) & (v <= 300)))
    if p05 <= -500 and lo >= -3100 and soft >= 0.05:
        return "ct", (f"values reach {lo:g} (air is about -1000 HU in CT) and {soft:.0%} of voxels "
                      "lie in the soft-tissue range -200..300 HU")
    if lo >= 0:
        if volume.array.dtype.kind == "f" and hi <= 100:
            return "pet", f"non-negative floating values up to {hi:g}, a range typical of PET SUV"
        nz = v[v > 0]
        if nz.size > 100:
            p90, p999 = np.percentile(nz, [90, 99.9])
            if p90 > 0 and p999 / p90 > 8:
                return "pet", (f"non-negative values with a heavy upper tail (99.9th percentile "
                               f"{p999 / p90:.1f}× the 90th), typical of PET uptake")
    return "mri", (f"values {lo:g}..{hi:g} have no CT air floor and no PET-like tail; "
                   "assumed MRI")
