"""SIGKILL ``textseg segment`` inside its write step; a plain re-run must complete the output set
and leave no hidden temporary file (issue 22, item 11).

``TEXTSEG_TEST_WRITE_PAUSE`` (a test hook) makes the write step sleep after each staged file and
after each rename, so the kill lands where it is meant to.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import TextSegLib

pytestmark = pytest.mark.slow  # four real runs of the bundled model (~10 s each)

REPO = Path(TextSegLib.__file__).resolve().parents[1]
CT = Path(__file__).resolve().parents[1] / "Data" / "totalsegmentator" / "example_ct_sm.nii.gz"
OUTPUTS = {"out.seg.nrrd", "out.nii.gz", "out_labels.csv", "stats.csv"}


@pytest.fixture(scope="module", autouse=True)
def _bundled_model():
    from TextSegLib.errors import ModelError
    from TextSegLib.models import catalog

    try:
        catalog.model_path("textseg-mini")
    except ModelError as exc:
        pytest.skip(f"bundled model not built: {exc}")


def _segment(out: Path, pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TEXTSEG_TEST_WRITE_PAUSE": str(pause)}
    return subprocess.Popen([sys.executable, "-m", "TextSegLib.cli.main", "segment", str(CT), "-p", "liver",
                             "--device", "cpu", "--threads", "1", "--quiet", "-o", str(out / "out.seg.nrrd"),
                             "--nifti", "--stats", str(out / "stats.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _kill_when(proc: subprocess.Popen, ready, limit: float = 180.0) -> None:
    end = time.monotonic() + limit
    while not ready() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill point: " + proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _rerun_completes(out: Path) -> None:
    proc = _segment(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    names = {p.name for p in out.iterdir()}
    assert names == OUTPUTS, names  # the whole set, and no .textseg-* debris
    assert all((out / n).stat().st_size > 0 for n in OUTPUTS)


def test_kill_between_the_renames_then_a_plain_rerun_completes_the_set(tmp_path):
    proc = _segment(tmp_path, pause=1.5)
    _kill_when(proc, lambda: (tmp_path / "out.seg.nrrd").exists())
    names = {p.name for p in tmp_path.iterdir()}
    assert "out.seg.nrrd" in names and "stats.csv" not in names  # an incomplete set ...
    assert any(n.startswith(".textseg-pending-") for n in names)  # ... that says so
    _rerun_completes(tmp_path)


def test_kill_while_staging_leaves_nothing_visible_and_its_temp_files_are_cleaned(tmp_path):
    proc = _segment(tmp_path, pause=1.5)
    _kill_when(proc, lambda: any(p.name.startswith(".textseg-tmp-") and p.stat().st_size > 0
                                 for p in tmp_path.iterdir()))
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & OUTPUTS, names  # nothing half-written is visible
    assert any(n.startswith(".textseg-tmp-") for n in names)
    _rerun_completes(tmp_path)


def test_a_complete_set_is_still_not_overwritten(tmp_path):
    _rerun_completes(tmp_path)
    proc = _segment(tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "already exists" in err and err.count("\n") == 1, err
