"""Time TextSeg's volume and segmentation I/O; prints one line per figure.

Run: ``python benchmarks/bench_io.py`` (uses a temporary folder; ~30 s on 2 cores).
"""
from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from TextSegLib.io import read_seg_nrrd, read_volume, write_nifti_labels, write_seg_nrrd, write_volume
from TextSegLib.segmentation import Segment, Segmentation
from TextSegLib.volume import Volume

ROOT = Path(__file__).resolve().parents[1]


def timed(label: str, fn, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    print(f"{label:<58s} {best:8.3f} s")
    return out


def main() -> None:
    import os

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), no GPU used")
    dicom = ROOT / "Testing/Data/totalsegmentator/example_ct_dicom"
    timed("read DICOM fixture (512x512x20, JPEG2000)", lambda: read_volume(dicom), 3)
    rng = np.random.default_rng(0)
    shape = (512, 512, 200)
    ct = rng.normal(0, 300, size=shape).astype(np.int16)
    vol = Volume(ct, np.diag([0.8, 0.8, 1.5, 1.0]), "ct", "bench")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for ext in (".nii.gz", ".nrrd", ".nii"):
            p = d / f"ct{ext}"
            timed(f"write_volume {shape} int16 {ext}", lambda: write_volume(vol, p, overwrite=True))
            timed(f"read_volume  {shape} int16 {ext}", lambda: read_volume(p))
        seg = Segmentation(vol)
        for n in range(10):
            m = np.zeros(shape, bool)
            m[40 * n:40 * n + 80, 100:300, 20:180] = True  # neighbours overlap -> 2 layers
            seg.add(Segment(f"s{n}", m))
        timed("write_seg_nrrd 10 segments (2 layers)", lambda: write_seg_nrrd(seg, d / "s.seg.nrrd", overwrite=True))
        timed("read_seg_nrrd 10 segments", lambda: read_seg_nrrd(d / "s.seg.nrrd"))
        timed("write_nifti_labels 10 segments", lambda: write_nifti_labels(seg, d / "l.nii.gz", overwrite=True))


if __name__ == "__main__":
    main()
