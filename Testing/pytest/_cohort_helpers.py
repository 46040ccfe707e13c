"""Small cohort inputs for the cohort tests: crops of the fixture scans (one model tile each,
so the bundled model stays fast on CPU) plus broken cases."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Testing" / "Data"


def crop(src: Path, dst: Path, box: tuple[slice, slice, slice]) -> Path:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(src))
    sitk.WriteImage(img[box], str(dst))
    return dst


def good_cases(folder: Path) -> dict[str, Path]:
    """CT (NIfTI), MR (NRRD) and chest CT (NRRD) crops."""
    folder.mkdir(parents=True, exist_ok=True)
    ts = DATA / "totalsegmentator"
    return {
        "ct_abdomen": crop(ts / "example_ct_sm.nii.gz", folder / "ct_abdomen.nii.gz", (slice(30, 78), slice(30, 78), slice(0, 30))),
        "mr_abdomen": crop(ts / "example_mr_sm.nii.gz", folder / "mr_abdomen.nrrd", (slice(30, 78), slice(20, 68), slice(0, 20))),
        "ct_chest": crop(DATA / "slicerio" / "CTChest4.nrrd", folder / "ct_chest.nrrd", (slice(40, 88), slice(40, 88), slice(10, 24))),
    }


def broken_cases(folder: Path) -> dict[str, Path]:
    bad = DATA / "bad_inputs"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(bad / "truncated.nii.gz", folder / "corrupt.nii.gz")
    shutil.copy(bad / "image_2d.nii.gz", folder / "flat_2d.nii.gz")
    shutil.copytree(bad / "dicom_two_series", folder / "two_series")
    return {"corrupt": folder / "corrupt.nii.gz", "flat_2d": folder / "flat_2d.nii.gz", "two_series": folder / "two_series"}


def dicom_roi() -> str:
    """A 120 mm box around the middle of the DICOM fixture series (RAS)."""
    from TextSegLib.io import read_volume

    v = read_volume(DATA / "totalsegmentator" / "example_ct_dicom")
    c = v.ijk_to_ras_points(np.array([[s / 2 for s in v.shape]]))[0]
    lo, hi = c - 60, c + 60
    return " ".join(f"{x:.1f}" for x in (*lo, *hi))


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["case_id", "path", "modality", "prompts", "roi"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in w.fieldnames})
    return path


def textseg(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "TextSegLib.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO), **kw)


def kill_one_worker_when_a_case_is_done(run: Path, killed: list, stop) -> None:
    """Watch the manifest; SIGKILL the worker process (a pool worker or Ray actor this test
    started) that finished the first case; it is then busy with the next one."""
    import json
    import signal
    import time

    while not stop.is_set():
        p = run / "manifest.jsonl"
        if p.is_file():
            for line in p.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("state") == "done" and rec.get("worker"):
                    pid = int(rec["worker"].rsplit(":", 1)[1])
                    time.sleep(0.5)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.2)
