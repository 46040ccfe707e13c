"""textseg-mini data side: label mapping, prompts, preprocessing, augmentation."""
from __future__ import annotations

import random

import numpy as np

from TextSegLib.models.bundled.augment import make_sample
from TextSegLib.models.bundled.cases import _ts_labels, body_mask_ct, lung_masks_ct
from TextSegLib.models.bundled.labels import prompt_forms, sample_prompt, split_side, ts_concept
from TextSegLib.models.bundled.preprocess import mask_to_grid, normalize, prepare
from TextSegLib.volume import Volume

from _bundled_helpers import synthetic_case


def test_ts_names_map_to_plain_concepts():
    assert ts_concept("kidney_left") == "left kidney"
    assert ts_concept("lung_lower_lobe_right") == "right lung"
    assert ts_concept("vertebrae_L3") == "lumbar spine"
    assert ts_concept("rib_left_7") == "ribs"
    assert ts_concept("vertebrae") == "vertebral column"
    assert ts_concept("kidney_cyst_left") is None


def test_ts_labels_merge_and_negatives():
    seg = np.zeros((4, 4, 4), np.uint8)
    seg[0] = 10  # lung_upper_lobe_left
    seg[1] = 11  # lung_lower_lobe_left
    seg[2, 0] = 29  # vertebrae_L3
    cmap = {5: "liver", 10: "lung_upper_lobe_left", 11: "lung_lower_lobe_left", 29: "vertebrae_L3"}
    masks, negatives = _ts_labels(seg, cmap)
    assert masks["left lung"].sum() == 32
    assert masks["vertebral column"].sum() == masks["lumbar spine"].sum() == 4
    assert "liver" in negatives and "left lung" not in negatives


def test_prompt_forms_cover_laterality_and_synonyms():
    forms = prompt_forms("left kidney")
    for f in ("left kidney", "kidney, left", "lt kidney", "L kidney", "left renal parenchyma"):
        assert f in forms
    assert not any("right" in f for f in forms)
    assert "hepatic parenchyma" in prompt_forms("liver")
    assert split_side("right adrenal gland") == ("right", "adrenal gland")
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [sample_prompt("liver", rng1) for _ in range(20)] == [sample_prompt("liver", rng2) for _ in range(20)]


def test_normalize_ct_windows_and_lateral_channel():
    x = normalize(np.array([[[-2000.0, 40.0, 3000.0]]]), "ct")
    assert x.shape == (3, 1, 1, 3)
    np.testing.assert_allclose(x[0, 0, 0], [-2.0, 0.08, 2.0], atol=1e-6)
    np.testing.assert_allclose(x[1, 0, 0], [-2.0, 0.0, 2.0], atol=1e-6)
    mr = normalize(np.random.default_rng(0).uniform(0, 500, (8, 8, 8)), "mri")
    assert abs(float(mr[0].mean())) < 1e-3 and np.array_equal(mr[0], mr[1])
    # Lateral channel: signed distance (100 mm units, 3 mm voxels) from the body's centre.
    hu = np.full((20, 4, 4), -1000.0)
    hu[10:16] = 40.0  # body centred at index 12.5
    lat = normalize(hu, "ct")[2]
    np.testing.assert_allclose(lat[:, 0, 0], (np.arange(20) - 12.5) * 0.03, atol=1e-6)


def test_prepare_resamples_to_3mm_ras_grid():
    # LPS-like direction (i towards patient left): the model grid must be RAS ordered.
    m = np.diag([-1.5, -1.5, 2.0, 1.0])
    a = np.zeros((40, 30, 12), np.float32)
    a[:10] = 100.0  # the patient's RIGHT side (low i here = high R)
    vol = Volume(a, m, "ct")
    raw, grid = prepare(vol)
    assert raw.shape == (20, 16, 8)  # round((n - 1) * old / new + 1)
    np.testing.assert_allclose(grid.spacing, 3.0)
    assert raw[-3:].mean() > 90 and raw[:3].mean() < 1  # right side now at high index
    mask = mask_to_grid(a > 50, vol)
    assert mask.shape == raw.shape and mask[-2:].all() and not mask[:3].any()


def test_body_and_lung_masks_sides():
    hu = np.full((40, 30, 20), -1000.0, np.float32)
    hu[4:36, 4:26, :] = 40.0
    hu[8:18, 9:21, 3:17] = -850.0  # low index = patient's left in RAS
    hu[22:32, 9:21, 3:17] = -850.0
    body = body_mask_ct(hu)
    assert body[20, 15, 10] and body[10, 12, 10] and not body[1, 1, 1]
    lungs = lung_masks_ct(hu, body, 0.1)  # 1680 voxels = 168 mL per lung
    assert set(lungs) == {"left lung", "right lung"}
    assert np.argwhere(lungs["left lung"])[:, 0].mean() < np.argwhere(lungs["right lung"])[:, 0].mean()


def test_make_sample_shapes_padding_and_no_lr_flip():
    case = synthetic_case()
    for seed in range(6):
        x, t, valid = make_sample(case, ["liver", "spleen", "aorta"], (32, 32, 32), random.Random(seed), "liver")
        assert x.shape == (3, 32, 32, 32) and t.shape == (3, 32, 32, 32)
        assert not valid[:, :, 24:].any()  # the case has 24 slices: the rest is end padding
        assert (x[:, ~valid] == 0).all() and t[2].sum() == 0  # negative prompt: empty target
        if t[0].any() and t[1].any():  # liver stays on the right of the spleen
            assert np.argwhere(t[0])[:, 0].mean() > np.argwhere(t[1])[:, 0].mean()


def test_sample_lateral_channel_matches_whole_scan_normalisation():
    case = synthetic_case()
    x, _, valid = make_sample(case, ["liver"], (32, 32, 24), random.Random(1), None, strong=False)
    full = normalize(case.image, "ct")
    # Without augmentation the crop starts at an integer offset: channels equal the scan's.
    off = next(o for o in range(case.image.shape[0]) if np.allclose(full[2, o, 0, 0], x[2, 0, 0, 0], atol=1e-5))
    np.testing.assert_allclose(x[2, :8, 0, 0], full[2, off:off + 8, 0, 0], atol=1e-5)


def test_make_sample_is_deterministic():
    case = synthetic_case()
    a = make_sample(case, ["liver"], (32, 32, 16), random.Random(7), "liver")
    b = make_sample(case, ["liver"], (32, 32, 16), random.Random(7), "liver")
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
