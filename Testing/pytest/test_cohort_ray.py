"""A real local Ray cluster (2 CPUs, started by the test): the same outputs as ``--workers 1``,
and a worker killed mid-run loses no case."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from _cohort_helpers import good_cases, kill_one_worker_when_a_case_is_done

ray = pytest.importorskip("ray", reason="Ray (the cohort extra) is not installed")
pytestmark = pytest.mark.slow  # ~1-2 min: a Ray cluster start plus two small cohorts


def _files(run: Path, cid: str) -> dict[str, bytes]:
    """Output bytes that must be identical (the .seg.nrrd header carries a write date, so its
    voxels are compared instead)."""
    from TextSegLib.io import read_seg_nrrd

    d = run / "cases" / cid
    out = {p.name: p.read_bytes() for p in d.iterdir() if p.suffix in (".gz", ".csv", ".png", ".json")}
    seg = read_seg_nrrd(d / f"{cid}.seg.nrrd")
    out["seg"] = b"".join(s.mask.tobytes() + s.name.encode() for s in seg)
    return out


def test_ray_two_workers_match_one_worker_and_survive_a_killed_worker(tmp_path):
    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch
    from TextSegLib.cohort.manifest import read_manifest

    scans = tmp_path / "scans"
    good = good_cases(scans)
    for i in range(3):  # more cases than workers, so the killed worker had work left
        shutil.copy(good["ct_abdomen"], scans / f"copy{i}.nii.gz")
    engine = EngineSpec("textseg-mini", device="cpu", threads=1)
    one = run_batch(BatchConfig(str(scans), str(tmp_path / "one"), ["liver", "spleen"], engine, progress=False,
                                handle_signals=False), echo=lambda s: None)
    assert (one.done, one.failed) == (6, 0)

    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=kill_one_worker_when_a_case_is_done, args=(tmp_path / "ray", killed, stop))
    watcher.start()
    try:
        two = run_batch(BatchConfig(str(scans), str(tmp_path / "ray"), ["liver", "spleen"], engine, workers=2,
                                    ray="local", progress=False, handle_signals=False), echo=lambda s: None)
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was killed"
    assert (two.done, two.failed, two.not_run) == (6, 0, 0)
    recs = read_manifest(tmp_path / "ray").cases
    workers = {r["worker"] for r in recs.values()}
    assert len(workers) >= 2  # cases really ran on several actors
    for cid in recs:
        assert _files(tmp_path / "one", cid) == _files(tmp_path / "ray", cid), cid
    a = (tmp_path / "one" / "measurements.csv").read_text()
    b = (tmp_path / "ray" / "measurements.csv").read_text()
    assert a == b
