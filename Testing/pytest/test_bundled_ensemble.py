"""Seed ensembles of textseg-mini (ensemble.json + member folders)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from TextSegLib.errors import ModelError
from TextSegLib.models.bundled.ensemble import EnsembleSAT, combine, member_folders
from TextSegLib.models.bundled.model import MiniConfig, MiniModel, save_weights
from TextSegLib.volume import Volume, make_ijk_to_ras

from _bundled_helpers import TINY

TERMS = ["liver", "spleen"]


def _member(folder, seed: int) -> MiniModel:
    torch.manual_seed(seed)
    cfg = MiniConfig(sat=dict(TINY), terms=TERMS, concepts={"ct": TERMS})
    model = MiniModel(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    emb = np.random.default_rng(0).normal(size=(len(TERMS), 384)).astype(np.float32)
    save_weights(model, emb, folder / "model.safetensors", half=False)
    (folder / "config.json").write_text(cfg.to_json())
    return model


def test_ensemble_decode_is_the_mean_member_probability(tmp_path):
    a, b = _member(tmp_path / "a", 1), _member(tmp_path / "b", 2)
    sat, head = combine([a, b], [np.zeros((2, 384))] * 2)
    assert isinstance(sat, EnsembleSAT)
    x = torch.randn(1, 3, 16, 16, 16)
    emb, idx = torch.randn(2, 384), torch.zeros(2, dtype=torch.long)
    q = head(emb, idx)
    assert q.shape == (2, 32)  # two members' queries side by side
    with torch.no_grad():
        got = torch.sigmoid(sat.decode(sat.encode_image(x), q[None]))
        pa = torch.sigmoid(a.sat.decode(a.sat.encode_image(x), a.query(emb, idx)[None]))
        pb = torch.sigmoid(b.sat.decode(b.sat.encode_image(x), b.query(emb, idx)[None]))
    torch.testing.assert_close(got, (pa + pb) / 2, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="queries of width 32"):
        sat.decode(sat.encode_image(x), q[None, :, :16])


def test_single_member_is_the_plain_model(tmp_path):
    a = _member(tmp_path / "a", 1)
    sat, head = combine([a], [np.zeros((2, 384))])
    assert sat is a.sat and head is a.query
    assert member_folders(tmp_path / "a") == [tmp_path / "a"]


def test_member_folders_errors(tmp_path):
    (tmp_path / "ensemble.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a valid ensemble file"):
        member_folders(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": []}))
    with pytest.raises(ModelError, match="lists no members"):
        member_folders(tmp_path)


def test_members_must_share_terms_and_image_config(tmp_path):
    a = _member(tmp_path / "a", 1)
    other = MiniModel(MiniConfig(sat={**TINY, "stage_channels": (4, 12)}, terms=TERMS, concepts={"ct": TERMS}))
    with pytest.raises(ModelError, match="differ"):
        combine([a, other], [np.zeros((2, 384))] * 2)


def test_engine_loads_an_ensemble_folder_and_segments(tmp_path):
    from TextSegLib.models.bundled import load_bundled_engine

    root = tmp_path / "ens"
    _member(root, 1)
    _member(root / "members" / "s2", 2)
    (root / "ensemble.json").write_text(json.dumps({"members": [".", "members/s2"]}))
    engine = load_bundled_engine(root, threads=1)
    assert isinstance(engine.model, EnsembleSAT) and len(engine.model.members) == 2
    vol = Volume(np.random.default_rng(0).normal(0, 100, (20, 20, 12)).astype(np.float32),
                 make_ijk_to_ras((3, 3, 3), (0, 0, 0), np.eye(3)), "ct", "noise")
    res = engine.segment(vol, ["liver"], modality="ct")
    assert res.probabilities["liver"].shape == vol.shape

    (root / "ensemble.json").write_text(json.dumps({"members": [".", "members/missing"]}))
    with pytest.raises(ModelError, match="missing"):
        load_bundled_engine(root)
