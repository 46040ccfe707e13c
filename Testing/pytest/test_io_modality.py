"""guess_modality: DICOM tag first, then intensity heuristics (documented limits)."""
from __future__ import annotations

import numpy as np

from TextSegLib.io import guess_modality
from TextSegLib.volume import Volume


def _vol(arr, **meta) -> Volume:
    v = Volume(arr, np.eye(4))
    v.meta.update(meta)
    return v


def test_dicom_tag_wins():
    air = np.full((8, 8, 8), -1000, np.int16)
    assert guess_modality(_vol(air, Modality="PT")) == ("pet", "DICOM Modality tag is 'PT'")
    assert guess_modality(_vol(air, Modality="MR"))[0] == "mri"


def test_ct_like_values():
    rng = np.random.default_rng(0)
    arr = rng.normal(40, 60, size=(20, 20, 20))
    arr[:, :, :5] = -1000  # air around the body
    mod, reason = guess_modality(_vol(arr.astype(np.int16)))
    assert mod == "ct" and "soft-tissue" in reason


def test_pet_suv_and_heavy_tail():
    rng = np.random.default_rng(1)
    suv = rng.gamma(1.5, 0.8, size=(20, 20, 20)).astype(np.float32)
    assert guess_modality(_vol(suv))[0] == "pet"
    bq = rng.gamma(1.5, 2000, size=(20, 20, 20))
    bq[5:8, 5:8, 5:8] = 400000  # bladder-like hot spot (0.3% of voxels)
    mod, reason = guess_modality(_vol(bq.astype(np.int32)))
    assert mod == "pet" and "tail" in reason


def test_mri_like_values():
    rng = np.random.default_rng(2)
    arr = np.zeros((20, 20, 20))
    arr[4:16, 4:16, 4:16] = rng.normal(600, 120, size=(12, 12, 12)).clip(0)
    assert guess_modality(_vol(arr.astype(np.uint16)))[0] == "mri"
