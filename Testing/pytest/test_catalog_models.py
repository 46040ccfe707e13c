"""Model catalog, folder registry, pull failure messages and `textseg models`."""
from __future__ import annotations

import json

import pytest

from _engine_helpers import make_model_folder
from TextSegLib.cli.main import main
from TextSegLib.errors import ModelError
from TextSegLib.models import catalog
from TextSegLib.models.catalog import ModelEntry, ModelFile


def test_catalog_entries():
    cat = catalog.load_catalog()
    assert {"SAT-Nano", "SAT-Pro", "textseg-mini"} <= set(cat)
    nano, pro = cat["SAT-Nano"], cat["SAT-Pro"]
    assert [f.name for f in nano.files] == ["nano.pth", "text_encoder.pth"]
    assert [f.name for f in pro.files] == ["pro.pth", "text_encoder.pth"]
    assert nano.source["repo_id"] == pro.source["repo_id"] == "zzh99/SAT"
    assert nano.tokenizer == "FremyCompany/BioLORD-2023-C" and nano.license
    assert 1.2e9 < nano.files[0].approx_size < 1.8e9 and 5e9 < pro.files[0].approx_size < 7e9
    assert catalog.get_entry("sat-nano").name == "SAT-Nano"
    with pytest.raises(ModelError, match="Known models"):
        catalog.get_entry("nope")
    vocab = catalog.sat_vocabulary()
    assert "liver" in vocab["ct"] and sum(map(len, vocab.values())) == 498


def test_missing_model_explains_manual_steps(home):
    with pytest.raises(ModelError) as e:
        catalog.model_path("SAT-Nano")
    msg = str(e.value)
    assert "textseg models pull SAT-Nano" in msg and "Nano/nano.pth" in msg and "register SAT-Nano" in msg


def test_pull_offline_gives_manual_steps(home, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the library's own offline mode
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    with pytest.raises(ModelError) as e:
        catalog.pull("SAT-Nano", home / "dl")
    assert "Could not download" in str(e.value) and "huggingface.co/zzh99/SAT" in str(e.value)


def test_verify_detects_partial_and_corrupt_files(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"x" * 100)
    partial = ModelEntry("m", "sat", files=(ModelFile("w.pth", "checkpoint", min_size=1000),))
    assert "partial" in catalog.verify(partial, tmp_path)[0]
    wrong = ModelEntry("m", "sat", files=(ModelFile("w.pth", "checkpoint", sha256="0" * 64),))
    assert "sha256" in catalog.verify(wrong, tmp_path)[0]
    right = ModelEntry("m", "sat", files=(ModelFile("w.pth", "checkpoint", sha256=catalog.file_sha256(tmp_path / "w.pth")),))
    assert catalog.verify(right, tmp_path) == []
    assert "missing" in catalog.verify(ModelEntry("m", "sat", files=(ModelFile("x.pth", "c"),)), tmp_path)[0]


def test_register_path_list_unregister(home, tmp_path, capsys):
    folder = make_model_folder(tmp_path / "small")
    assert main(["models", "register", "my-small", str(folder)]) == 0
    assert json.loads((home / "models.json").read_text())["models"]["my-small"] == str(folder.resolve())
    capsys.readouterr()
    assert main(["models", "path", "MY-SMALL"]) == 0
    assert capsys.readouterr().out.strip() == str(folder.resolve())
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "my-small" in out and "SAT-Nano" in out and "not downloaded" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["models", "register", "x", str(empty)]) == 2
    assert "no textseg-model.json" in capsys.readouterr().err
    assert main(["models", "unregister", "my-small"]) == 0
    assert main(["models", "path", "my-small"]) == 2
    engine = catalog.load_engine(path=folder, device="cpu")
    assert engine.name == "sat-small" and engine.vocabulary("ct") == ["left kidney", "liver", "spleen"]


def test_catalog_folder_accepts_alternative_file_names(home, tmp_path):
    from TextSegLib.models.catalog import describe_folder, get_entry

    f = tmp_path / "nano"
    f.mkdir()
    (f / "SAT_Nano.pth").write_bytes(b"")
    (f / "text_encoder.pth").write_bytes(b"")
    man = describe_folder(f, get_entry("SAT-Nano"))
    assert man["checkpoint"] == "SAT_Nano.pth" and man["queries"]["file"] == "text_encoder.pth"
    assert man["inference"]["spacing"] == [1.0, 1.0, 3.0]
