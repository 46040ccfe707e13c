"""textseg-mini data side: label mapping, prompts, preprocessing, augmentation."""
from __future__ import annotations

import random

import numpy as np

from TextSegLib.models.bundled import contrast
from TextSegLib.models.bundled.augment import make_sample
from TextSegLib.models.bundled.cases import Case
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


def _unenhanced_case() -> "Case":
    """The synthetic case with an unenhanced 'aorta' (40 HU) and a 'vertebral column' (300 HU)."""
    case = synthetic_case("native")
    aorta = np.zeros(case.image.shape, bool)
    aorta[16:20, 14:18, :] = True
    spine = np.zeros(case.image.shape, bool)
    spine[16:20, 20:26, :] = True
    case.image[aorta] = 40.0
    case.image[spine] = 300.0
    case.labels.update({"aorta": aorta, "vertebral column": spine})
    return case


def test_contrast_class_map_and_unenhanced_detection():
    case = _unenhanced_case()
    cls = contrast.class_map(case.labels, case.image.shape)
    names = [n for n, _ in contrast.CLASSES]
    assert cls[17, 15, 5] == names.index("artery") + 1 and cls[28, 15, 10] == names.index("liver") + 1
    assert cls[17, 22, 5] == 0  # bone does not enhance
    assert contrast.is_unenhanced(case.image, case.labels, "ct")
    bright = case.image.copy()
    bright[case.labels["aorta"]] = 250.0
    assert not contrast.is_unenhanced(bright, case.labels, "ct")  # already enhanced: left alone
    assert not contrast.is_unenhanced(case.image, case.labels, "mri")
    assert not contrast.is_unenhanced(case.image, {"liver": case.labels["liver"]}, "ct")  # no aorta label


def test_contrast_phases_brighten_vessels_more_than_organs():
    case = _unenhanced_case()
    cls = contrast.class_map(case.labels, case.image.shape)
    rng = np.random.default_rng(0)
    for phase in contrast.PHASES:
        off = contrast.enhancement(cls, rng, phase)
        inner_aorta = off[17:19, 15:17, 5:20].mean()
        lo, hi = contrast.PHASES[phase][0]
        assert 0.5 * lo <= inner_aorta <= hi  # smoothed at the border only
        assert off[2, 2, 2] == 0.0  # outside every labelled tissue
    art = contrast.enhancement(cls, np.random.default_rng(1), "arterial")
    assert art[17:19, 15:17, 5:20].mean() > art[26:32, 12:22, 6:16].mean() + 100  # aorta ≫ liver


def test_make_sample_simulates_contrast_only_on_unenhanced_ct():
    case = _unenhanced_case()
    aorta_hu = []
    for seed in range(12):
        x, t, valid = make_sample(case, ["aorta"], (32, 32, 24), random.Random(seed), "aorta")
        core = (t[0] > 0) & valid
        aorta_hu.append(float(np.median(x[0][core])) * 500.0)  # wide channel = HU / 500
    assert min(aorta_hu) < 90 and max(aorta_hu) > 150  # some crops native, some enhanced
    assert make_sample.__globals__["_classes"](synthetic_case()) is None  # no aorta label: never
