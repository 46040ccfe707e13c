"""GUI-thread ticks of a Slicer run through the engine process (issue 19, item 2).

The module's logic on slicer-core MRML runs jobs through its engine process (`textseg serve` on
loopback, real uvicorn, bundled model) under the PythonQt-like GIL-holding host
(Testing/pytest/_gil_host.py), with an engine that loads its model ``--start-delay`` seconds
late and a server queue that is full for a while. Prints, per phase (start, upload, queue,
progress, download), the number of ticks, the longest and the p99 tick; the MRML import of the
result and the clicks on their own; the cancel latency in every phase; and, after every stop
path (cancel, model switch, shutdown), the processes and ports left behind.
Targets: longest tick <= 100 ms, p99 <= 30 ms; cancel final before the next tick; nothing left.

    python benchmarks/bench_gui_ticks.py [--shape 512 512 300] [--start-delay 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "TextSeg", ROOT / "Testing", ROOT / "Testing" / "pytest"):
    sys.path.insert(0, str(p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    ap.add_argument("--start-delay", type=float, default=20.0)
    args = ap.parse_args()

    from _gui_ticks import Scenario, ct_node, machine, occupy, slow_python
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegLogicLib.engine_process import engine_leftovers

    print(f"machine: {machine()}; volume {tuple(args.shape)}, engine start delayed {args.start_delay:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        env = make_scene()
        logic = TextSegLogic(**env.logics())
        logic.use_model("bundled", device="cpu", python=slow_python(Path(tmp), args.start_delay, "--max-queued", "1"))
        scan = ct_node(env, Path(tmp), tuple(args.shape), name="scan")
        sc = Scenario(logic)
        try:
            sc.run(scan, cancel_in="start", cancel_after=3)
            job = sc.run(scan)
            print(f"full run: {job.state}; {len(job.measurements)} prompt(s) imported")
            occupy(logic.process, logic.volume(ct_node(env, Path(tmp), (128, 128, 40), 7, "other"), "ct"), jobs=2)
            sc.run(scan, cancel_in="queue", cancel_after=2)
            sc.run(scan, cancel_in="progress", cancel_after=2)
            sc.run(ct_node(env, Path(tmp), tuple(args.shape), 3, "new"), cancel_in="upload", cancel_after=0)
            sc.run(scan, cancel_in="download", cancel_after=0)
            print(sc.report())
            for name, secs in zip(["import (MRML)"] * len(sc.imports), sc.imports):
                print(f"{name}: {1e3 * secs:.1f} ms (reported apart from the ticks)")
            logic.use_model("bundled", device="cpu")  # another interpreter: a model switch stops the tree
            print(f"left after the model switch: {engine_leftovers() or 'nothing'}")
        finally:
            logic.shutdown()
        print(f"left after shutdown: {engine_leftovers() or 'nothing'}")


if __name__ == "__main__":
    main()
