"""TextSeg's VoxTell engine side by side with voxtell's own predictor, same input and weights.

Prints wall time and peak RSS of each (each run in its own process, so peaks do not mix; the
two sides alternate ``--repeats`` times and the fastest run of each is compared, as a shared
machine's load swings between runs), and TextSeg's own extra steps (geometry, mapping the
masks and probabilities back, presence) separately. Random weights from
Testing/pytest/_voxtell_helpers.py (the released weights cannot be fetched here).

    OMP_NUM_THREADS=1 PYTHONPATH=.:Testing/pytest python benchmarks/bench_voxtell.py [--shape 96 96 64] [--device cpu] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _secs(runs: list[dict]) -> str:
    return ", ".join(f"{r['wall_s']:.1f}" for r in runs) + " s"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(which: str, folder: str, shape, device: str, prompts) -> dict:
    import torch

    from _voxtell_helpers import ct_like
    from TextSegLib.volume import Volume

    m = np.diag([-0.8, -0.8, 1.5, 1.0])
    vol = Volume(ct_like(tuple(shape)), m, "ct")
    if which == "package":
        from voxtell.inference.predictor import VoxTellPredictor

        from TextSegLib.models.voxtell.geometry import VoxTellGrid

        pred = VoxTellPredictor(model_dir=folder, device=torch.device(device),
                                embedding_bank=str(Path(folder) / "text_embeddings.npz"))
        img = VoxTellGrid.of(vol).to_model(vol.array)[None].astype(np.float32)
        t = time.perf_counter()
        pred.predict_single_image(img, prompts)
        return {"wall_s": time.perf_counter() - t, "peak_rss_mb": _peak_mb()}
    from TextSegLib.models.voxtell import load_voxtell_engine

    eng = load_voxtell_engine(Path(folder), device=device)
    t = time.perf_counter()
    r = eng.segment(vol, prompts)
    out = {"wall_s": time.perf_counter() - t, "peak_rss_mb": _peak_mb(),
           "geometry_s": r.timings.get("geometry", 0.0), "presence_s": r.timings.get("presence", 0.0),
           "postprocess_s": r.timings.get("postprocess", 0.0), "tiles_s": r.timings.get("tiles", 0.0)}
    if "peak_gpu_bytes" in r.info:
        out["peak_gpu_gb"] = r.info["peak_gpu_bytes"] / 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", default="liver,spleen,left kidney")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    prompts = a.prompts.split(",")
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.shape, a.device, prompts)))
        return
    from _voxtell_helpers import make_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model_folder(Path(tmp))
        runs: dict[str, list[dict]] = {"package": [], "textseg": []}
        for _ in range(max(1, a.repeats)):
            for which in ("package", "textseg"):
                cmd = [sys.executable, __file__, "--child", which, str(folder), "--shape", *map(str, a.shape),
                       "--device", a.device, "--prompts", a.prompts]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
                runs[which].append(json.loads(out))
    p, t = (min(runs[w], key=lambda r: r["wall_s"]) for w in ("package", "textseg"))
    print(f"shape {tuple(a.shape)}, {len(prompts)} prompts, device {a.device}, fastest of {len(runs['package'])} "
          "alternating runs each")
    print(f"voxtell predictor: {p['wall_s']:.2f} s, peak RSS {p['peak_rss_mb']:.0f} MB "
          f"(runs: {_secs(runs['package'])})")
    print(f"TextSeg engine:    {t['wall_s']:.2f} s, peak RSS {t['peak_rss_mb']:.0f} MB "
          f"(x{t['wall_s'] / p['wall_s']:.3f} time, x{t['peak_rss_mb'] / p['peak_rss_mb']:.3f} memory; "
          f"runs: {_secs(runs['textseg'])})")
    extra = t["geometry_s"] + t["postprocess_s"] + t["presence_s"]
    print(f"TextSeg extra steps: geometry {t['geometry_s'] * 1000:.1f} ms, masks + probabilities back "
          f"{t['postprocess_s'] * 1000:.1f} ms, presence {t['presence_s'] * 1000:.1f} ms "
          f"(together {extra:.2f} s = x{1 + extra / p['wall_s']:.3f} of the predictor's time)")
    if "peak_gpu_gb" in t:
        print(f"peak GPU memory (TextSeg): {t['peak_gpu_gb']:.2f} GB")


if __name__ == "__main__":
    main()
