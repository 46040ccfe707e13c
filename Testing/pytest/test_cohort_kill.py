"""Kill ``textseg batch`` with SIGTERM and SIGKILL at random moments, re-run, and check that no
case is lost or done twice and that no partial file is ever visible."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _cohort_helpers import DATA, REPO, crop, kill_one_worker_when_a_case_is_done

pytestmark = pytest.mark.slow  # ~1-2 min: six real runs of the bundled model


N_CASES = 10
EXPECTED = {"{c}.seg.nrrd", "{c}.nii.gz", "{c}_labels.csv", "measurements.json", "qc.png"}


def _start(scans: Path, run: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "TextSegLib.cli.main", "batch", str(scans), "-o", str(run),
                             "-p", "liver", "--device", "cpu", "--threads", "1", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))


def _done_count(run: Path) -> int:
    m = run / "manifest.jsonl"
    if not m.is_file():
        return 0
    n = 0
    for ln in m.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:  # a line a SIGKILL cut short
            continue
        n += rec.get("kind") == "case" and rec.get("state") == "done"
    return n


def _wait_mid_run(proc: subprocess.Popen, run: Path, before: int, seed: int, limit: float = 240.0) -> None:
    """Wait until this run has finished one more case (so it is really under way), then a random
    part of a case's time, so the signal lands anywhere inside the next case."""
    end = time.monotonic() + limit
    while proc.poll() is None and _done_count(run) <= before and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 2.0))


def _check_consistent(run: Path) -> dict:
    """Every visible case folder is complete, every done record's files are there; returns the
    latest record per case."""
    from TextSegLib.cohort.manifest import read_manifest
    from TextSegLib.cohort.outputs import verify_outputs

    cases = run / "cases"
    for d in (cases.iterdir() if cases.is_dir() else []):
        names = {p.name for p in d.iterdir()}
        assert names == {e.format(c=d.name) for e in EXPECTED}, (d.name, names)
        json.loads((d / "measurements.json").read_text())
    assert not [p for p in run.rglob(".textseg-*") if ".staging" not in p.parts]
    st = read_manifest(run)
    assert st.bad_lines <= 1  # at most the one line a SIGKILL cut short
    for cid, rec in st.cases.items():
        if rec["state"] == "done":
            assert verify_outputs(run, rec, checksum=True) is None, cid
    return st.cases


def test_sigterm_and_sigkill_at_random_points_lose_and_repeat_nothing(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    first = crop(DATA / "totalsegmentator" / "example_ct_sm.nii.gz", scans / "case0.nii.gz",
                 (slice(40, 80), slice(30, 70), slice(0, 24)))
    for i in range(1, N_CASES):
        shutil.copy(first, scans / f"case{i}.nii.gz")
    run = tmp_path / "run"
    kills = [(signal.SIGKILL, 11), (signal.SIGTERM, 12), (signal.SIGKILL, 13), (signal.SIGTERM, 14),
             (signal.SIGKILL, 15)]
    interrupted = 0
    for sig, seed in kills:
        before = _done_count(run)
        proc = _start(scans, run)
        _wait_mid_run(proc, run, before, seed)
        if proc.poll() is not None:  # the whole cohort finished first: nothing left to interrupt
            _, err = proc.communicate()
            assert proc.returncode == 0, err
            break
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        interrupted += 1
        if sig == signal.SIGTERM:  # stops after the running case: a clean exit code, no traceback
            assert proc.returncode in (0, 130, -signal.SIGTERM), err
            assert "Traceback" not in err
        else:
            assert proc.returncode == -signal.SIGKILL
        _check_consistent(run)
    assert interrupted >= 3  # the signals really landed inside runs
    proc = _start(scans, run)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    latest = _check_consistent(run)
    assert sorted(latest) == [f"case{i}" for i in range(N_CASES)]
    assert all(r["state"] == "done" for r in latest.values())
    lines = [json.loads(ln) for ln in (run / "manifest.jsonl").read_text().splitlines() if ln.strip().endswith("}")]
    done = Counter(r["case_id"] for r in lines if r.get("kind") == "case" and r.get("state") == "done")
    assert set(done.values()) == {1}, done  # no case finished twice
    rows = (run / "measurements.csv").read_text().strip().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(latest)  # one row per case x structure
    assert not any((run / ".staging").iterdir()) if (run / ".staging").exists() else True


def test_a_killed_worker_process_loses_no_case(tmp_path):
    """--workers 2: SIGKILL one worker process mid-run; its case is run again on a new worker."""
    import threading

    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch
    from TextSegLib.cohort.manifest import read_manifest

    scans = tmp_path / "scans"
    scans.mkdir()
    first = crop(DATA / "totalsegmentator" / "example_ct_sm.nii.gz", scans / "case0.nii.gz",
                 (slice(40, 80), slice(30, 70), slice(0, 24)))
    for i in range(1, 5):
        shutil.copy(first, scans / f"case{i}.nii.gz")
    run = tmp_path / "run"
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=kill_one_worker_when_a_case_is_done, args=(run, killed, stop))
    watcher.start()
    try:
        s = run_batch(BatchConfig(str(scans), str(run), ["liver"], EngineSpec("textseg-mini", device="cpu", threads=1),
                                  workers=2, progress=False, handle_signals=False), echo=lambda x: None)
    finally:
        stop.set()
        watcher.join()
    assert killed
    assert (s.done, s.failed, s.not_run) == (5, 0, 0)
    latest = _check_consistent(run)
    assert len({r["worker"] for r in latest.values()}) >= 2
