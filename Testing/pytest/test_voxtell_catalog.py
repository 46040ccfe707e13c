"""VoxTell in the model catalog: licence line, consent before download, missing parts, register, terms."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from TextSegLib.cli.main import main
from TextSegLib.errors import ModelError
from TextSegLib.models import catalog

from _voxtell_helpers import release_layout

HAS_VOXTELL = importlib.util.find_spec("voxtell") is not None


class _R:
    def __init__(self, code, out):
        self.exit_code, self.output = code, out


@pytest.fixture()
def run(capsys):
    def go(args):
        capsys.readouterr()
        code = main(list(args))
        o = capsys.readouterr()
        return _R(code, o.out + o.err)
    return go


def test_catalog_lists_voxtell_with_its_licence(home, run):
    e = catalog.get_entry("voxtell")
    assert e.name == "VoxTell" and e.architecture == "voxtell"
    assert "CC-BY-NC-SA-4.0" in e.license and "non-commercial" in e.license and "share-alike" in e.license
    assert [f.name for f in e.files] == ["plans.json", "fold_0/checkpoint_final.pth", "text_embeddings.npz"]
    out = run(["models", "list"]).output
    assert "VoxTell" in out and "not downloaded" in out


def test_pull_without_consent_is_refused_before_any_download(home, run, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.SimpleNamespace(hf_hub_download=lambda **k: calls.append(k), snapshot_download=lambda **k: calls.append(k))
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    r = run(["models", "pull", "VoxTell", "--text-encoder"])  # no terminal: no silent yes
    assert r.exit_code != 0 and not calls
    out = r.output
    assert "CC-BY-NC-SA-4.0, non-commercial use only, share-alike" in out
    assert "fold_0/checkpoint_final.pth" in out and "GB" in out and "Qwen/Qwen3-Embedding-4B" in out
    assert "its licence was not accepted" in out and "--yes" in out
    with pytest.raises(ModelError, match="licence of its weights was not accepted"):
        catalog.pull("VoxTell")  # the library refuses too
    assert not catalog.consented("VoxTell")


def test_consent_is_asked_once_then_download_runs(home, run, monkeypatch, tmp_path):
    import sys
    import types

    src = tmp_path / "hub"
    src.mkdir()
    calls = []

    def fake_download(repo_id, filename, local_dir):
        calls.append(filename)
        p = src / filename.replace("/", "_")
        p.write_bytes(b"{}" if filename.endswith(".json") else b"x")
        return str(p)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fake_download))
    r = run(["models", "pull", "VoxTell", "--yes"])
    assert r.exit_code == 0, r.output
    assert catalog.consented("VoxTell") and len(calls) == 3
    folder = catalog.default_folder("VoxTell")
    assert (folder / "fold_0" / "checkpoint_final.pth").is_file()


def test_missing_part_is_one_line(home, tmp_path):
    (tmp_path / "vt").mkdir()
    (tmp_path / "vt" / "plans.json").write_text("{}")
    with pytest.raises(ModelError) as e:
        catalog.register("VoxTell", tmp_path / "vt")
    assert "fold_0/checkpoint_final.pth is missing" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="textseg models pull VoxTell"):
        catalog.model_path("VoxTell")


def _fake_release(folder: Path) -> Path:
    return release_layout(folder, labels=("liver", "left kidney", "not an organ at all"))


def test_register_and_terms_star_bank_concepts(home, run, tmp_path):
    folder = _fake_release(tmp_path / "vt")
    r = run(["models", "register", "VoxTell", str(folder)])
    assert r.exit_code == 0 and "Registered VoxTell" in r.output
    label, vocab, free = catalog.model_vocabulary("VoxTell")
    assert free and "liver" in vocab["ct"] and vocab["ct"] == vocab["mri"]
    out = run(["terms", "liver", "--model", "VoxTell"]).output
    assert out.splitlines()[0].startswith("* Liver")
    assert "in VoxTell's embedding bank: 2 of the tree's" in out


def test_not_downloaded_voxtell_still_resolves_free_text(home):
    label, vocab, free = catalog.model_vocabulary("VoxTell")
    assert label == "VoxTell" and vocab == {} and free


@pytest.mark.skipif(HAS_VOXTELL, reason="checks the message shown when the voxtell package is absent")
def test_engine_without_package_says_how_to_install(home, tmp_path):
    folder = _fake_release(tmp_path / "vt")
    with pytest.raises(ModelError, match=r"pip install 'textseg\[voxtell\]'"):
        catalog.load_engine(path=folder)
