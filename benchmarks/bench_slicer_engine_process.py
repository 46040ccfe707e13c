"""Slicer logic through the engine process vs `textseg segment`, bundled model, sample CT.

Prints, on this machine:
  * `textseg segment SAMPLE -p liver` wall time (a fresh process: imports, model load, run, write);
  * the logic's first run (starts the engine process: imports + model load + run, one-off);
  * warm runs through the engine process (model loaded), polled freely and under the
    PythonQt-like GIL-holding host (Testing/pytest/_gil_host.py);
  * for contrast, the old design: the engine in a Python thread of the host process, under
    the same host (capped at --cap seconds).
Target (issue 13): a warm run <= 1.2x the CLI run, plus a one-off start-up.

    python benchmarks/bench_slicer_engine_process.py [--runs 3] [--cap 300]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "TextSeg", ROOT / "Testing", ROOT / "Testing" / "pytest"):
    sys.path.insert(0, str(p))
SAMPLE = ROOT / "Resources" / "samples" / "abdomen_ct_sample.nii.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=float, default=300.0)
    ap.add_argument("--prompt", default="liver")
    args = ap.parse_args()

    from _gil_host import run_host
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic

    say = lambda *a: print(*a, flush=True)  # noqa: E731 - figures appear as they are measured
    say(f"machine: {sys.platform}, {__import__('os').cpu_count()} CPUs, load {__import__('os').getloadavg()[0]:.1f}; "
        f"prompt {args.prompt!r}; sample CT 512x512x20")
    cli = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "TextSegLib.cli.main", "segment", str(SAMPLE), "-p", args.prompt,
                            "--model", "textseg-mini", "--device", "cpu", "-o", f"{d}/out.seg.nrrd", "--quiet"],
                           check=True, cwd=ROOT, capture_output=True)
            cli.append(time.perf_counter() - t)
            say(f"  textseg segment run: {cli[-1]:.1f} s")
    env = make_scene()
    node = env.load_volume(SAMPLE)
    logic = TextSegLogic(**env.logics())
    logic.use_model("bundled", device="cpu")
    t = time.perf_counter()
    job = logic.start(node, args.prompt, modality="ct")
    job.wait(900, poll_s=0.1)
    first = time.perf_counter() - t
    assert job.state == "done", job.error
    say(f"  logic first run (engine start-up + model load + run): {first:.1f} s")
    logic.finish(job)
    free, hosted = [], []
    for _ in range(args.runs):
        job = logic.start(node, args.prompt, modality="ct")
        t = time.perf_counter()
        job.wait(900, poll_s=0.1)
        free.append(time.perf_counter() - t)
        say(f"  logic warm run, polled freely: {free[-1]:.1f} s")
        job = logic.start(node, args.prompt, modality="ct")
        seconds, _, done = run_host(job.poll, lambda: job.done, timeout_s=900)
        assert done and job.state == "done", job.error
        hosted.append(seconds)
        say(f"  logic warm run under the GIL-holding host: {seconds:.1f} s")
    logic.shutdown()

    if args.cap <= 0:
        say(f"textseg segment median {med(cli):.1f} s; logic warm free {med(free):.1f} s, hosted {med(hosted):.1f} s; "
            f"ratio hosted/CLI {med(hosted) / med(cli):.2f}; first run {first:.1f} s")
        return
    from TextSegLib.models.catalog import load_engine

    engine = load_engine("textseg-mini", device="cpu")
    inline = TextSegLogic(**env.logics(), engine=engine)
    inline.segment(node, args.prompt, modality="ct")  # warm caches
    job = inline.start(node, args.prompt, modality="ct", threaded=True)
    thread_s, _, thread_done = run_host(job.poll, lambda: job.done, timeout_s=args.cap)
    job.cancel()
    if job.runner._thread is not None:
        job.runner._thread.join(300)  # let the worker stop at its next tile before exiting

    med = statistics.median
    print(f"textseg segment (fresh process), median of {args.runs}: {med(cli):.1f} s  {['%.1f' % x for x in cli]}")
    print(f"logic, first run incl. engine start-up: {first:.1f} s")
    print(f"logic, warm run through the engine process, polled freely: {med(free):.1f} s  {['%.1f' % x for x in free]}")
    print(f"logic, warm run under the GIL-holding host: {med(hosted):.1f} s  {['%.1f' % x for x in hosted]}")
    print(f"ratio warm hosted / CLI: {med(hosted) / med(cli):.2f} (target <= 1.2); "
          f"one-off start-up over a warm run: {first - med(free):.1f} s")
    state = f"{thread_s:.1f} s" if thread_done else f"not finished after {thread_s:.0f} s (cap)"
    print(f"old design (engine in a Python thread) under the same host: {state}")


if __name__ == "__main__":
    main()
