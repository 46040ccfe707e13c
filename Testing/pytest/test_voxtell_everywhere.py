"""VoxTell on every TextSeg path, with the small random checkpoint, random bank and tiny Qwen3:
``textseg serve`` (real uvicorn, its own process) with ``textseg segment --server``, ``textseg
refine`` on the VoxTell mask it wrote, ``textseg batch`` (each prompt embedded once per cohort),
and the Slicer module's engine process."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("voxtell", reason="the optional voxtell package is not installed (pip install 'textseg[voxtell]')")
requests = pytest.importorskip("requests", reason="the server tests need requests (server extra)")
pytest.importorskip("uvicorn", reason="`textseg serve` needs uvicorn (server extra)")

from _module_helpers import ROOT  # noqa: E402
from _voxtell_helpers import ct_like, make_model_folder, make_tiny_qwen  # noqa: E402
from TextSegLib.cli.main import main  # noqa: E402
from TextSegLib.models import catalog  # noqa: E402
from TextSegLib.models.voxtell.text import PromptEmbeddings, QwenEncoder  # noqa: E402
from TextSegLib.volume import Volume  # noqa: E402

FREE = "lesion in segment 4"  # free text: in no bank, resolves to no concept
KEY = "vt-test-key"


def _lps(shape=(40, 44, 36), seed: int = 1) -> Volume:
    m = np.diag([-0.8, -0.8, 1.5, 1.0])  # LPS as DICOM stores it, in RAS terms
    m[:3, 3] = (20.0, 15.0, -40.0)
    return Volume(ct_like(shape, seed), m, "ct")


def _nifti(vol: Volume, path: Path) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(vol.array.astype(np.float32), vol.ijk_to_ras), str(path))
    return path


@pytest.fixture(scope="module")
def vt(tmp_path_factory):
    """A TEXTSEG_HOME with VoxTell registered (small random weights, random bank, tiny Qwen3)."""
    root = tmp_path_factory.mktemp("vt-everywhere")
    folder = make_model_folder(root / "VoxTell")
    make_tiny_qwen(folder / "text_encoder")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTSEG_HOME", str(root / "home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("TEXTSEG_MODEL", raising=False)
        catalog.register("VoxTell", folder)
        yield {"root": root, "folder": folder}


@pytest.fixture(scope="module")
def engine(vt):
    return catalog.load_engine("VoxTell", device="cpu")


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, f"textseg serve stopped with exit code {proc.returncode}"
        try:
            if requests.get(f"{url}/v1/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("textseg serve did not start")


def test_serve_lists_voxtell_segments_and_refine_edits_its_mask(vt, engine, capsys, tmp_path):
    from TextSegLogicLib.engine_process import free_port

    assert main(["models", "list"]) == 0
    listed = [ln for ln in capsys.readouterr().out.splitlines() if "VoxTell" in ln]
    assert listed and "ready" in listed[0] and str(vt["folder"]) in listed[0]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTSEG_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "TextSegLib.cli.main", "serve", "--port", str(port),
                             "--model", "VoxTell", "--device", "cpu"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=str(tmp_path))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        info = requests.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
        assert info["model"] == "VoxTell" and info["free_text"] is True and info["vocabulary_size"]["ct"] == 6
        vol = _lps()
        ct = _nifti(vol, tmp_path / "ct.nii.gz")
        out = tmp_path / "vt.nii.gz"
        os.environ["TEXTSEG_API_KEY"] = KEY
        try:
            rc = main(["segment", str(ct), "-p", "spleen", "-p", FREE, "-o", str(out), "--server", url,
                       "--modality", "ct", "--quiet"])
        finally:
            del os.environ["TEXTSEG_API_KEY"]
        assert rc == 0, capsys.readouterr().err
    finally:
        proc.terminate()
        proc.wait(30)
    import nibabel

    from TextSegLib.io.volumes import read_volume

    labels = np.asarray(nibabel.load(str(out)).dataobj)
    local = engine.segment(read_volume(ct, "ct"), ["spleen", FREE])
    assert local.found["spleen"] and local.masks["spleen"].any()
    values = [v for v in np.unique(labels) if v]
    assert len(values) >= 1
    served = labels == values[0]
    np.testing.assert_array_equal(served, local.masks["spleen"])  # the server's mask is the engine's
    # textseg refine on that VoxTell mask: a negative click inside it removes the region around it
    inside = np.argwhere(served)[len(np.argwhere(served)) // 2]
    refined = tmp_path / "refined.nii.gz"
    rc = main(["refine", str(ct), str(out), "--label", str(int(values[0])), "--neg", ",".join(map(str, inside)),
               "--ijk", "-o", str(refined)])
    assert rc == 0, capsys.readouterr().err
    after = np.asarray(nibabel.load(str(refined)).dataobj) == values[0]
    assert not after[tuple(inside)] and after.sum() < served.sum()
    assert not (after & ~served).any()  # a negative click only removes


def test_batch_embeds_each_prompt_once_per_cohort(vt, tmp_path, monkeypatch):
    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch
    from TextSegLib.cohort.manifest import read_manifest

    import shutil

    shutil.rmtree(vt["folder"] / "text-cache", ignore_errors=True)  # earlier tests cached FREE already
    encoded: list[list[str]] = []
    cached: list[str] = []
    real_encode, real_cached = QwenEncoder.encode, PromptEmbeddings._cached

    def encode(self, texts):
        encoded.append(list(texts))
        return real_encode(self, texts)

    def from_cache(self, text):
        v = real_cached(self, text)
        if v is not None:
            cached.append(text)
        return v

    monkeypatch.setattr(QwenEncoder, "encode", encode)
    monkeypatch.setattr(PromptEmbeddings, "_cached", from_cache)
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(3):
        _nifti(_lps((40, 40, 36), seed=10 + i), scans / f"case{i}.nii.gz")
    cfg = BatchConfig(str(scans), str(tmp_path / "run"), ["liver", FREE], EngineSpec("VoxTell", device="cpu", threads=1),
                      progress=False, modality="ct", thumbnails=False)
    run_batch(cfg, echo=lambda s: None)
    cases = read_manifest(tmp_path / "run").cases
    assert len(cases) == 3 and all(c["state"] == "done" for c in cases.values()), cases
    assert encoded == [[FREE]]  # the encoder ran once, for the one prompt outside the bank
    assert cached == [FREE, FREE]  # the two later cases read its cached embedding
    assert "liver" not in cached  # bank hits never reach the cache or the encoder


def test_slicer_engine_process_runs_voxtell(vt, engine, tmp_path):
    slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")  # noqa: F841
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic

    env = make_scene()
    node = env.load_volume(_nifti(_lps(), tmp_path / "ct.nii.gz"))
    logic = TextSegLogic(**env.logics())
    logic.use_model("voxtell", device="cpu")
    try:
        job = logic.start(node, "spleen", modality="ct")
        assert job.wait(300, poll_s=0.1)
        assert job.state == "done", job.error
        assert logic.process is not None and logic.process.config.model == "VoxTell"
        local = engine.segment(logic.volume(node), ["spleen"])
        np.testing.assert_array_equal(job.result.masks["spleen"], local.masks["spleen"])
        seg = logic.finish(job)
        names = [seg.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(seg.GetSegmentation().GetNumberOfSegments())]
        assert names == ["Spleen"]
    finally:
        logic.shutdown()
