"""TextSeg's VoxTell engine side by side with voxtell's own predictor, same input and weights.

Prints wall time and peak RSS of each (each in its own process, so peaks do not mix), and
TextSeg's own extra steps (geometry, presence) separately. Random weights from
Testing/pytest/_voxtell_helpers.py (the released weights cannot be fetched here).

    OMP_NUM_THREADS=1 PYTHONPATH=.:Testing/pytest python benchmarks/bench_voxtell.py [--shape 96 96 64] [--device cpu]
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
           "geometry_s": r.timings.get("geometry", 0.0), "presence_s": r.timings.get("presence", 0.0)}
    if "peak_gpu_bytes" in r.info:
        out["peak_gpu_gb"] = r.info["peak_gpu_bytes"] / 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", default="liver,spleen,left kidney")
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    prompts = a.prompts.split(",")
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.shape, a.device, prompts)))
        return
    from _voxtell_helpers import make_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model_folder(Path(tmp))
        rows = {}
        for which in ("package", "textseg"):
            cmd = [sys.executable, __file__, "--child", which, str(folder), "--shape", *map(str, a.shape),
                   "--device", a.device, "--prompts", a.prompts]
            rows[which] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    p, t = rows["package"], rows["textseg"]
    print(f"shape {tuple(a.shape)}, {len(prompts)} prompts, device {a.device}")
    print(f"voxtell predictor: {p['wall_s']:.2f} s, peak RSS {p['peak_rss_mb']:.0f} MB")
    print(f"TextSeg engine:    {t['wall_s']:.2f} s, peak RSS {t['peak_rss_mb']:.0f} MB "
          f"(x{t['wall_s'] / p['wall_s']:.3f} time, x{t['peak_rss_mb'] / p['peak_rss_mb']:.3f} memory)")
    print(f"TextSeg extra steps: geometry {t['geometry_s'] * 1000:.1f} ms, presence {t['presence_s'] * 1000:.1f} ms")
    if "peak_gpu_gb" in t:
        print(f"peak GPU memory (TextSeg): {t['peak_gpu_gb']:.2f} GB")


if __name__ == "__main__":
    main()
