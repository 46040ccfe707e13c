"""Negative crops for textseg-mini's training (issue 21, item 3): structures prompted on heads
and at the lungs' level, where they cannot be, with all-zero targets; off by default."""
from __future__ import annotations

import random

import numpy as np

from TextSegLib.models.bundled import cases as cases_mod
from TextSegLib.models.bundled import trainer
from TextSegLib.models.bundled.cases import Case
from TextSegLib.models.bundled.negatives import chest_sources, head_sources, negative_sample
from TextSegLib.volume import Volume

from _bundled_helpers import TINY, synthetic_case

VOCAB = {"mri": ["liver", "left kidney", "spleen", "trachea", "brain", "erector spinae", "left lung"],
         "ct": ["liver", "right femur", "urinary bladder", "left lung", "right lung", "body", "spleen"]}
SIZE = (16, 16, 16)


def mr_head() -> Volume:
    """An MR head: a 150 x 190 mm ellipsoid (300 a.u.) on a 2 mm grid."""
    shape = (90, 110, 80)
    g = np.ogrid[:shape[0], :shape[1], :shape[2]]
    inside = ((g[0] - 45) / 37.5) ** 2 + ((g[1] - 55) / 47.5) ** 2 + ((g[2] - 40) / 40.0) ** 2 <= 1.0
    img = np.where(inside, 300.0, 0.0).astype(np.float32)
    img += np.random.default_rng(0).normal(0, 10, shape).astype(np.float32)
    return Volume(img, np.diag([2.0, 2.0, 2.0, 1.0]), "mri", "synthetic head")


def chest_case() -> Case:
    """A CT case whose lungs fill the upper half of the slices."""
    shape = (40, 36, 24)
    img = np.full(shape, -1000.0, np.float32)
    body = np.zeros(shape, bool)
    body[4:-4, 4:-4, :] = True
    img[body] = 40.0
    left, right = np.zeros(shape, bool), np.zeros(shape, bool)
    left[6:18, 8:28, 12:] = True
    right[22:34, 8:28, 12:] = True
    img[left | right] = -850.0
    return Case("chest", "chest", "ct", img, np.diag([3.0, 3.0, 3.0, 1.0]),
                {"body": body, "left lung": left, "right lung": right}, set(), "test")


def test_a_head_is_asked_for_trunk_structures_with_all_zero_targets():
    (src,) = head_sources([mr_head()], VOCAB)
    assert src.concepts == ["erector spinae", "left kidney", "left lung", "liver", "spleen"]  # not brain, trachea
    rng = random.Random(0)
    for _ in range(4):
        x, t, v, chosen = negative_sample(src, 6, SIZE, rng)
        assert t.shape == (6, *SIZE) and t.dtype == np.float32 and not t.any()
        assert v.any() and np.isfinite(x).all() and np.abs(x[0][v]).max() > 0
        assert set(chosen) <= set(src.concepts) and len(chosen) == 6


def test_the_lungs_slab_of_a_chest_case_is_asked_for_pelvic_and_limb_structures():
    (src,) = chest_sources([chest_case(), synthetic_case()], VOCAB)  # the synthetic abdomen has no lungs
    assert src.slices == (12, 24)
    assert src.concepts == ["right femur", "urinary bladder"]  # not the liver: its dome reaches the lungs
    x, t, v, chosen = negative_sample(src, 3, SIZE, random.Random(1))
    assert not t.any() and v[:, :, :12].any() and not v[:, :, 12:].any()  # the slab holds 12 slices
    assert src.view().image.shape[2] == 12


def test_negative_crops_are_off_by_default_and_enter_the_batch_when_asked(tmp_path, monkeypatch):
    cs = [synthetic_case("a", seed=1), chest_case()]
    monkeypatch.setattr(cases_mod, "get_cases", lambda cache=None, rebuild=False: cs)
    cfg = trainer.TrainConfig(out=str(tmp_path / "x"), sat=dict(TINY), batch=3, queries_per_step=4)
    assert cfg.negative_p == 0.0 and cfg.negative_heads == ()
    assert trainer._negative_sources(cfg, cs, VOCAB, print) == []
    trainer._CTX.clear()
    trainer._CTX.update(cfg=cfg, cases=cs, cum=np.array([0.5, 1.0]), concepts=["body", "liver", "spleen"],
                        emb_of={}, negatives=[])
    from collections import defaultdict

    trainer._CTX["emb_of"] = defaultdict(lambda: np.zeros(384, np.float32))
    plain = trainer._step_inputs(7)
    import dataclasses

    neg_cfg = dataclasses.replace(cfg, negative_p=1.0)
    negs = chest_sources(cs, VOCAB)
    trainer._CTX.update(negatives=negs)  # sources present, but p = 0: the same batch as before
    same = trainer._step_inputs(7)
    for a, b in zip(plain, same):
        assert np.array_equal(a, b)
    trainer._CTX.update(cfg=neg_cfg)
    x, t, v, q, mods = trainer._step_inputs(7)
    assert not t.any() and v.any()  # every crop is a negative one
    trainer._CTX.clear()


def test_training_with_negative_heads_runs(tmp_path, monkeypatch):
    import SimpleITK as sitk

    from TextSegLib.io.sitk_convert import to_sitk

    head = tmp_path / "head.nii.gz"
    sitk.WriteImage(to_sitk(mr_head()), str(head))
    a = synthetic_case("a", seed=1)
    a.labels["right femur"] = np.zeros(a.image.shape, bool)
    a.labels["right femur"][26:32, 14:20, :4] = True  # the vocabulary gets a lower-limb term
    mr = synthetic_case("mr", seed=3)
    mr.modality = "mri"
    mr.image = np.clip(mr.image + 1000.0, 0, None)
    cs = [a, chest_case(), mr]
    monkeypatch.setattr(cases_mod, "get_cases", lambda cache=None, rebuild=False: cs)
    lines: list[str] = []
    out = trainer.train(trainer.TrainConfig(out=str(tmp_path / "m"), steps=2, sat=dict(TINY), negative_p=0.5,
                                            negative_heads=(str(head),)), log=lines.append)
    assert (out / "model.safetensors").is_file()
    assert any("Negative crops (p = 0.5) from 2 source(s)" in m for m in lines), "\n".join(lines)


def test_the_cli_passes_the_negative_crop_options(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from TextSegLib.cli.train import command

    seen = {}

    def fake_train(cfg, log=print):
        seen["cfg"] = cfg
        return tmp_path

    monkeypatch.setattr(trainer, "train", fake_train)
    head = tmp_path / "head.nii.gz"
    head.write_bytes(b"x")
    res = CliRunner().invoke(command, ["--out", str(tmp_path / "m"), "--no-evaluate", "--negative-p", "0.2",
                                       "--negative-head", str(head)])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].negative_p == 0.2 and seen["cfg"].negative_heads == (str(head),)
    opts = {p.name: p.default for p in command.params}
    assert opts["negative_p"] == trainer.TrainConfig(out="x").negative_p == 0.0
