"""Cohort runner benchmarks: cases per hour (1 vs 2 workers, Ray with 2), scaling efficiency,
overhead per case outside inference, and a 1,000-case synthetic cohort for manifest / resume /
report speed (a fast stand-in engine there, since that part measures the runner, not the model).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/bench_cohort.py [--cases 6] [--synthetic 1000] [--skip-model]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "pytest"))


def model_runs(tmp: Path, n: int, prompts: list[str], full_size: bool = False) -> None:
    from _cohort_helpers import DATA, crop

    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch
    from TextSegLib.cohort.manifest import read_manifest

    scans = tmp / "scans"
    scans.mkdir()
    box = (slice(0, 122), slice(0, 101), slice(0, 30)) if full_size else (slice(30, 78), slice(30, 78), slice(0, 30))
    first = crop(DATA / "totalsegmentator" / "example_ct_sm.nii.gz", scans / "c0.nii.gz", box)
    print(f"cases: {n} x the fixture CT {'(whole, 122x101x30 at 3 mm)' if full_size else 'crop 48x48x30 at 3 mm'}, "
          f"prompts {', '.join(prompts)}, bundled textseg-mini, 1 torch thread per worker")
    for i in range(1, n):
        shutil.copy(first, scans / f"c{i}.nii.gz")
    import os

    rates, steady = {}, {}
    for label, workers, ray in (("1 worker", 1, None), ("2 workers", 2, None), ("Ray, 2 workers", 2, "local")):
        run = tmp / label.replace(" ", "_").replace(",", "")
        t = time.perf_counter()
        s = run_batch(BatchConfig(str(scans), str(run), prompts, EngineSpec("textseg-mini", device="cpu", threads=1),
                                  workers=workers, ray=ray, progress=False, handle_signals=False), echo=lambda x: None)
        wall = time.perf_counter() - t
        recs = [r for r in read_manifest(run).cases.values() if r["state"] == "done"]
        seg = np.array([r["timings"]["segment"] for r in recs])
        tot = np.array([r["seconds"] for r in recs])
        span = max(r["finished"] for r in recs) - min(r["started"] for r in recs)
        rates[label] = n / wall * 3600
        steady[label] = n / span * 3600
        over = tot - seg
        print(f"{label:>15}: {n} cases in {wall:6.1f} s incl. start-up = {rates[label]:6.0f} cases/h; "
              f"steady state (first case start to last case end) {steady[label]:6.0f} cases/h; per case "
              f"{np.median(tot):.2f} s median, inference {np.median(seg):.2f} s, outside inference "
              f"{np.median(over):.3f} s = {100 * np.median(over / tot):.1f} % (median); failed {s.failed}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for what, r in (("incl. start-up", rates), ("steady state", steady)):
        print(f"scaling efficiency 1 -> 2 workers ({what}): {r['2 workers'] / r['1 worker'] / 2:.2f} (processes), "
              f"{r['Ray, 2 workers'] / r['1 worker'] / 2:.2f} (Ray)")


class StandInEngine:
    """Thresholds the scan (for the runner benchmark only: no model)."""

    name, free_text, modalities = "stand-in", False, ("ct",)

    def vocabulary(self, modality):
        return ["liver", "spleen"]

    def segment(self, volume, prompts, *, modality=None, roi_ras=None, progress=None, cancel=None):
        from TextSegLib.engine.base import EngineResult
        from TextSegLib.knowledge.resolved import engine_prompts

        res = EngineResult(masks={})
        for i, p in enumerate(engine_prompts(self, prompts, modality or "ct")):
            res.masks[p.text] = volume.array > (20 + 30 * i)
            res.probabilities[p.text] = res.masks[p.text].astype(np.float32)
            res.prompts[p.text] = p
        res.timings["total"] = 0.0
        return res


def synthetic(tmp: Path, n: int) -> None:
    import SimpleITK as sitk

    import TextSegLib.cohort.runner as runner
    from TextSegLib.cohort import BatchConfig, run_batch
    from TextSegLib.cohort.backends import InlineBackend
    from TextSegLib.cohort.plan import EngineFacts, model_identity
    from TextSegLib.cohort.worker import CaseProcessor

    class StandInBackend(InlineBackend):
        def start(self):
            self.processor = CaseProcessor(self.spec, engine=StandInEngine(), identity=model_identity(self.spec))
            return EngineFacts.of(self.processor.engine)

    runner.make_backend = lambda cfg: StandInBackend(cfg.engine)
    scans = tmp / "synthetic"
    scans.mkdir()
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for i in range(n):
        a = rng.normal(0, 40, (8, 16, 16)).astype(np.int16)
        a[2:6, 4:12, 4:4 + (i % 8) + 2] += 80
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((2.0, 2.0, 3.0))
        sitk.WriteImage(img, str(scans / f"s{i:05d}.nii.gz"))
    print(f"synthetic cohort: {n} volumes of 16x16x8 written in {time.perf_counter() - t:.1f} s")
    run = tmp / "synthetic_run"
    cfg = BatchConfig(str(scans), str(run), ["liver", "spleen"], modality="ct", progress=False, handle_signals=False)
    t = time.perf_counter()
    s = run_batch(cfg, echo=lambda x: None)
    first = time.perf_counter() - t
    print(f"first run: {s.done} done / {s.failed} failed in {first:.1f} s ({first / n * 1000:.0f} ms per case "
          "with the stand-in engine: read, export 2 formats, measure, thumbnails, manifest fsync)")
    t = time.perf_counter()
    s2 = run_batch(cfg, echo=lambda x: None)
    resume = time.perf_counter() - t
    t = time.perf_counter()
    runner.finalize(run, None)
    fin = time.perf_counter() - t
    print(f"resume check of {n} finished cases: {resume:.2f} s for the whole re-run, tables and report "
          f"rebuilt included ({s2.ran} cases re-run); a separate tables + report rebuild: {fin:.2f} s; manifest {(run / 'manifest.jsonl').stat().st_size / 1e6:.2f} MB, "
          f"report.html {(run / 'report.html').stat().st_size / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--full-size", action="store_true", help="cases are the whole 122x101x30 fixture CT, not crops")
    args = ap.parse_args()
    import os

    print(f"machine: {os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_model:
            model_runs(Path(d), args.cases, ["liver", "spleen"], args.full_size)
        if args.synthetic:
            synthetic(Path(d), args.synthetic)


if __name__ == "__main__":
    main()
