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


def model_runs(tmp: Path, n: int, prompts: list[str]) -> None:
    from _cohort_helpers import DATA, crop

    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch
    from TextSegLib.cohort.manifest import read_manifest

    scans = tmp / "scans"
    scans.mkdir()
    first = crop(DATA / "totalsegmentator" / "example_ct_sm.nii.gz", scans / "c0.nii.gz",
                 (slice(30, 78), slice(30, 78), slice(0, 30)))
    for i in range(1, n):
        shutil.copy(first, scans / f"c{i}.nii.gz")
    rates = {}
    for label, workers, ray in (("1 worker", 1, None), ("2 workers", 2, None), ("Ray, 2 workers", 2, "local")):
        run = tmp / label.replace(" ", "_").replace(",", "")
        t = time.perf_counter()
        s = run_batch(BatchConfig(str(scans), str(run), prompts, EngineSpec("textseg-mini", device="cpu", threads=1),
                                  workers=workers, ray=ray, progress=False, handle_signals=False), echo=lambda x: None)
        wall = time.perf_counter() - t
        recs = [r for r in read_manifest(run).cases.values() if r["state"] == "done"]
        seg = np.array([r["timings"]["segment"] for r in recs])
        tot = np.array([r["seconds"] for r in recs])
        rates[label] = n / wall * 3600
        print(f"{label:>15}: {n} cases in {wall:6.1f} s (incl. model load) = {rates[label]:7.0f} cases/h; "
              f"per case {tot.mean():.2f} s, inference {seg.mean():.2f} s, "
              f"overhead outside inference {100 * (1 - seg.sum() / tot.sum()):.1f} % of the case time; "
              f"failed {s.failed}", flush=True)
    print(f"scaling efficiency 1 -> 2 workers: {rates['2 workers'] / rates['1 worker'] / 2:.2f} (processes), "
          f"{rates['Ray, 2 workers'] / rates['1 worker'] / 2:.2f} (Ray)")


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
    print(f"resume check of {n} finished cases: {resume:.2f} s in all ({s2.ran} re-run; of which tables + "
          f"report rebuild {fin:.2f} s); manifest {(run / 'manifest.jsonl').stat().st_size / 1e6:.2f} MB, "
          f"report.html {(run / 'report.html').stat().st_size / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    import os

    print(f"machine: {os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_model:
            model_runs(Path(d), args.cases, ["liver", "spleen"])
        if args.synthetic:
            synthetic(Path(d), args.synthetic)


if __name__ == "__main__":
    main()
