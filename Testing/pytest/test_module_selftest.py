"""Issue 19 §7: the self-test (liver in the bundled abdomen CT) passes where ``import torch`` fails,
says what it skipped, leaves no process behind; the sample CT is registered with Sample Data."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from _module_helpers import ROOT

from TextSegLogicLib import selftest

# A script run in a fresh interpreter: a meta-path finder makes `import torch` fail there (as in a
# Slicer without the PyTorch extension), then the self-test runs on a slicer-core scene.
SCRIPT = r"""
import json, sys
sys.path[:0] = {paths!r}
if {block!r}:
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None
    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch was importable")
from slicer_bootstrap import make_scene
from TextSegLogicLib import TextSegLogic
from TextSegLogicLib.selftest import segment_liver

env = make_scene()
report = segment_liver(TextSegLogic(**env.logics()), env.load_volume, say=lambda m: print("SAY", m, flush=True))
print("REPORT", json.dumps(report.__dict__))
"""


def _marked_processes(mark: str) -> list[int]:
    """PIDs whose environment carries ``mark`` (the engine process inherits its parent's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _run_self_test(tmp_path: Path, block_torch: bool, timeout: int) -> tuple[dict, str]:
    paths = [str(ROOT), str(ROOT / "TextSeg"), str(ROOT / "Testing"), str(ROOT / "Testing" / "pytest")]
    script = tmp_path / "run_selftest.py"
    script.write_text(SCRIPT.format(paths=paths, block=block_torch))
    mark = f"textseg-selftest-{uuid.uuid4().hex}"
    env = dict(os.environ, TEXTSEG_SELFTEST_MARK=mark, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT "):]), mark


def test_self_test_passes_where_torch_cannot_be_imported(tmp_path):
    pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
    report, mark = _run_self_test(tmp_path, block_torch=True, timeout=300)
    assert any("torch" in s and "bundled model run" in s for s in report["skipped"]), report
    passed = " | ".join(report["passed"])
    assert "sample CT loaded" in passed and "coded concept Liver" in passed and "Undo refuses" in passed
    assert "no process left behind" in passed
    assert _marked_processes(mark) == []


def test_self_test_runs_the_bundled_model_and_stops_its_engine(tmp_path):
    pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
    missing = selftest.missing_for_model_run()
    if missing:
        pytest.skip(f"the engine's packages are not installed: {missing}")
    report, mark = _run_self_test(tmp_path, block_torch=False, timeout=900)
    assert report["skipped"] == [] and "bundled model segmented Liver" in report["passed"]
    assert "no process left behind" in report["passed"]
    assert _marked_processes(mark) == []  # nor orphaned after the "Slicer" process exited


def test_self_test_is_named_for_what_it_segments():
    src = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert "def test_liver_in_abdomen_ct(self)" in src and "self.test_liver_in_abdomen_ct()" in src
    assert "test_lungs_from_text" not in src


# -- Sample Data ---------------------------------------------------------------------------
def registerCustomSampleDataSource(category="Custom",  # noqa: N802 - Slicer's name
                                   sampleName=None, uris=None, fileNames=None, nodeNames=None,
                                   customDownloader=None, thumbnailFileName=None,
                                   loadFileTypes=None, loadFiles=None, loadFileProperties={},  # noqa: B006
                                   checksums=None,
                                   loadFileType=None):
    """The signature of SampleData.SampleDataLogic.registerCustomSampleDataSource in Slicer v5.10.0
    and v5.12.3 (Modules/Scripted/SampleData/SampleData.py): identical in both."""


def test_sample_ct_registration_fits_sampledatas_signature(tmp_path):
    calls: list[dict] = []

    def record(*args, **kwargs):
        inspect.signature(registerCustomSampleDataSource).bind(*args, **kwargs)  # TypeError if it does not fit
        calls.append(kwargs)

    selftest.register_sample_data(record, "/icons/TextSeg.png")
    (kw,) = calls
    assert kw["category"] == "TextSeg" and kw["thumbnailFileName"] == "/icons/TextSeg.png"
    assert kw["loadFileTypes"] == ["VolumeFile"] and "loadFileType" not in kw  # the deprecated one
    assert len(kw["uris"]) == len(kw["fileNames"]) == len(kw["nodeNames"]) == len(kw["checksums"]) == 1
    # what SampleDataLogic.downloadFile does with it: urlretrieve into its cache, then verify "SHA256:<hex>"
    cached = tmp_path / kw["fileNames"][0]
    urllib.request.urlretrieve(kw["uris"][0], cached)
    algo, digest = kw["checksums"][0].split(":")
    assert algo == "SHA256" and hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_sample_checksum_is_the_files():
    data = (ROOT / "Resources" / "samples" / selftest.SAMPLE_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == selftest.SAMPLE_SHA256
