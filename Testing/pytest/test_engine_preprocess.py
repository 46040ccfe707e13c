"""Preprocessing parity with the SAT reference fixtures (sat-reference/preprocess-*)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _engine_helpers import SAT_REF, find_data, read_nifti
from TextSegLib.engine.preprocess import PreprocessConfig, parse_spacing, preprocess
from TextSegLib.engine.resample import to_source_grid
from TextSegLib.errors import GeometryError, InputFileError
from TextSegLib.volume import Volume



@pytest.mark.parametrize("modality,fname", [("ct", "example_ct_sm.nii.gz"), ("mri", "example_mr_sm.nii.gz")])
def test_matches_reference(modality, fname):
    ref = np.load(SAT_REF / f"preprocess-{modality}.npz")["image"].astype(np.float32)
    meta = json.loads((SAT_REF / f"preprocess-{modality}.json").read_text())
    vol = read_nifti(find_data(fname), modality)
    pre = preprocess(vol)
    assert pre.array.dtype == np.float32
    assert pre.array.shape == ref.shape == tuple(meta["output"]["shape"])
    assert pre.grid.shape == tuple(meta["resampled"]["shape"])
    assert list(pre.grid.crop_start) == meta["crop"]["start"]
    assert list(pre.grid.crop_stop) == meta["crop"]["end"]
    assert np.array_equal(pre.grid.ijk_to_ras, np.asarray(meta["resampled"]["affine"]))
    assert np.array_equal(pre.grid.cropped_ijk_to_ras, np.asarray(meta["crop"]["cropped_affine"]))
    assert np.abs(pre.array - ref).max() <= 4e-3
    n = meta["normalisation"]
    assert pre.stats["clip_low"] == n["clip_low"] and pre.stats["clip_high"] == n["clip_high"]
    assert abs(pre.stats["mean"] - n["mean"]) < 1e-3 and abs(pre.stats["std"] - n["std"]) < 1e-3
    # the inverse mapping lands on the source grid
    back = to_source_grid(np.ones(pre.grid.cropped_shape, bool), pre.grid, vol, kind="mask")
    assert back.shape == vol.shape and back.any()


def test_configurable_spacing_and_normalisation():
    vol = read_nifti(find_data("example_ct_sm.nii.gz"), "ct")
    pre = preprocess(vol, config=PreprocessConfig(spacing=(6, 6, 6), normalisation="none", crop_foreground=False))
    assert pre.grid.shape == (62, 51, 16)  # round((n-1)*3/6 + 1), numpy rounding
    assert np.allclose(pre.grid.spacing, 6)
    assert pre.array.max() > 100  # raw HU kept
    two = preprocess(vol, config=PreprocessConfig(spacing=(6, 6, 6),
                                                  normaliser=lambda raw, m: np.stack([raw / 1000, raw / 100])))
    assert two.array.shape == (2,) + two.grid.cropped_shape
    assert two.stats["normalisation"] == "custom"
    pct = preprocess(vol, "mri", PreprocessConfig(spacing=(6, 6, 6)))
    assert pct.stats["normalisation"] == "percentile"
    assert abs(float(pct.array.mean())) < 1e-3 and abs(float(pct.array.std()) - 1) < 1e-3


def test_body_mask_and_bad_input():
    a = np.full((20, 20, 6), -1000, np.float32)
    a[5:15, 5:15, :] = 40
    pre = preprocess(Volume(a, np.eye(4), "ct"), config=PreprocessConfig(spacing=None, crop_foreground=False))
    assert pre.body.sum() == 10 * 10 * 6
    a[0, 0, 0] = np.nan
    with pytest.raises(InputFileError, match="NaN"):
        preprocess(Volume(a, np.eye(4), "ct"))


def test_parse_spacing():
    assert parse_spacing("1,1,3") == (1.0, 1.0, 3.0)
    assert parse_spacing("3") == (3.0, 3.0, 3.0)
    assert parse_spacing("source") is None
    with pytest.raises(GeometryError):
        parse_spacing("1,-1,3")
    with pytest.raises(GeometryError):
        parse_spacing("a,b")
