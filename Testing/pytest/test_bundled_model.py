"""The shipped textseg-mini model end to end on the held-out patient:
prompt -> (tree) -> query -> tiles -> masks -> source grid -> files."""
from __future__ import annotations

from pathlib import Path
import csv

import numpy as np
import pytest

from TextSegLib.cli.main import main
from TextSegLib.models.bundled.evaluate import LARGE, dice, holdout_data

from _bundled_helpers import shipped_model_available

pytestmark = pytest.mark.skipif(not shipped_model_available(),
                                reason="Resources/models/textseg-mini weights are not present")

#: Dice floors a little below what the shipped 3-member ensemble measured
#: (MODEL_CARD.md: liver 0.936, spleen 0.822, aorta 0.757).
FLOORS = {"liver": 0.90, "spleen": 0.75, "aorta": 0.65}


@pytest.fixture(scope="module")
def one_thread():
    """1 torch thread (much faster on a shared CPU); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def holdout_result(one_thread):
    from TextSegLib.models.bundled import load_bundled_engine

    engine = load_bundled_engine()
    vol, refs = holdout_data()
    prompts = ["liver", "spleen", "aorta", "left kidney", "hepatic parenchyma"]
    return engine, vol, refs, engine.segment(vol, prompts, modality="ct")


def test_holdout_dice_above_floor(holdout_result):
    engine, vol, refs, res = holdout_result
    for concept, floor in FLOORS.items():
        m = res.masks[concept]
        assert m.shape == vol.shape and m.dtype == bool
        assert dice(m, refs[concept]) >= floor, (concept, dice(m, refs[concept]))
    assert res.probabilities["liver"].shape == vol.shape


def test_free_text_paraphrase_finds_liver(holdout_result):
    _, _, refs, res = holdout_result
    assert dice(res.masks["hepatic parenchyma"], refs["liver"]) >= FLOORS["liver"] - 0.05


def test_absent_structure_is_small(holdout_result):
    # No kidney in this 4 cm slab of the upper abdomen.
    _, vol, refs, res = holdout_result
    assert "left kidney" not in refs
    ml = res.masks["left kidney"].sum() * np.prod(vol.spacing) / 1000
    # Shipped ensemble: 0.8 mL (one member alone gave 69 mL inside the spleen,
    # see MODEL_CARD.md); the bound catches a model that fires on an organ.
    assert ml < 10.0, ml


def test_mean_over_large_structures_meets_the_stretch_goal(holdout_result):
    _, _, refs, res = holdout_result
    present = [c for c in LARGE if c in refs and c in res.masks]
    assert present == ["liver", "spleen", "aorta"]
    assert np.mean([dice(res.masks[c], refs[c]) for c in present]) >= 0.75  # measured 0.839


def test_engine_protocol_and_vocabulary(holdout_result):
    from TextSegLib.engine.base import Engine
    from TextSegLib.models.bundled.ensemble import EnsembleSAT

    engine = holdout_result[0]
    assert isinstance(engine, Engine) and engine.name == "textseg-mini"
    assert isinstance(engine.model, EnsembleSAT) and len(engine.model.members) == 3  # ensemble.json
    voc = engine.vocabulary("ct")
    assert {"liver", "spleen", "left kidney", "right kidney", "aorta"} <= set(voc)
    assert set(LARGE) <= set(voc)


def test_demo_cli_writes_files_and_refuses_overwrite(tmp_path, capsys, one_thread):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "-p", "liver", "-p", "spleen", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("demo.seg.nrrd", "demo_overlay.png", "demo_volumes.csv"):
        assert (out / name).is_file() and str(out / name) in printed
    rows = list(csv.DictReader((out / "demo_volumes.csv").open()))
    assert [r["structure"] for r in rows] == ["Liver", "Spleen"]  # preferred names
    assert 300 < float(rows[0]["volume_ml"]) < 1100  # reference: 699 mL in this slab
    from TextSegLib.io import read_seg_nrrd

    seg = read_seg_nrrd(out / "demo.seg.nrrd")
    assert {n.lower() for n in seg.names} == {"liver", "spleen"}  # segments carry preferred names
    assert main(["demo", "--out", str(out)]) != 0  # existing files are never overwritten
    assert "already exists" in capsys.readouterr().err


def test_demo_default_folder_never_overwrites_an_earlier_demo(tmp_path, monkeypatch):
    from TextSegLib.cli.demo import default_out_dir

    monkeypatch.chdir(tmp_path)
    assert default_out_dir(False) == Path("textseg-demo")
    Path("textseg-demo").mkdir()
    assert default_out_dir(False) == Path("textseg-demo")  # empty: reuse it
    (Path("textseg-demo") / "demo.seg.nrrd").write_bytes(b"user's file")
    assert default_out_dir(False) == Path("textseg-demo-2")
    Path("textseg-demo-2").mkdir()
    (Path("textseg-demo-2") / "x").write_text("x")
    assert default_out_dir(False) == Path("textseg-demo-3")
    assert default_out_dir(True) == Path("textseg-demo")  # --overwrite: the plain folder
