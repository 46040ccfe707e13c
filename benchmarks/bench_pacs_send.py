"""What "Send to PACS" costs the GUI thread (slicer-core, headless), on a 512 x 512 x 300 CT.

The click reads the masks from MRML (``dicom_export.segmentation_from_node``) and writes the job
for the child process (``TextSegLib.pacs.job.write_send_job``: masks as packed bits); the SEG
writing and the STOW-RS then run in ``python -m TextSegLib.pacs.job`` and each 100 ms tick only
polls it. Printed: the click's two parts, the job's size, and one poll tick (process alive).

Run:  python benchmarks/bench_pacs_send.py [--masks 5] [--shape 512 512 300]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "TextSeg"), str(ROOT / "Testing"), str(ROOT / "Testing" / "pytest")]

from bench_mrml_import import make_masks, make_volume_node  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    args = ap.parse_args()
    from _module_helpers import LungThresholdEngine
    from slicer_bootstrap import make_scene
    from TextSegLib.pacs import job as pacs_job
    from TextSegLogicLib import TextSegLogic, mrml_io
    from TextSegLogicLib.dicom_export import segmentation_from_node
    from TextSegLogicLib.pacs_process import PacsProcess

    env = make_scene()
    node = make_volume_node(env, tuple(args.shape))
    logic = TextSegLogic(**env.logics(), engine=LungThresholdEngine())
    seg_node = logic.output_segmentation(node)
    volume = logic.volume(node, "")
    for name, mask in make_masks(tuple(args.shape), args.masks).items():
        mrml_io.put_segment(seg_node, None, name, mask, volume.ijk_to_ras)
    t0 = time.perf_counter()
    seg = segmentation_from_node(logic, node, seg_node)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        pacs_job.write_send_job(folder, seg, [], "http://127.0.0.1:9/dicom-web")
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    proc = PacsProcess.test("http://127.0.0.1:9/dicom-web")
    t3 = time.perf_counter()
    proc.poll()
    t4 = time.perf_counter()
    proc.cancel()
    proc.cleanup()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{args.masks} masks on {' x '.join(map(str, args.shape))}")
    print(f"click: MRML read (segmentation_from_node)   {1000 * (t1 - t0):8.1f} ms")
    print(f"click: job write (packed bits, {size / 1e6:5.1f} MB) {1000 * (t2 - t1):8.1f} ms")
    print(f"tick:  poll of a running job                {1000 * (t4 - t3):8.3f} ms")


if __name__ == "__main__":
    main()
