"""One run of TextSeg end to end: ``textseg segment`` in this process, on a model folder.

Runs the CLI's own entry point (read, preprocess, tiles, resample to the source grid, write
the .seg.nrrd). For the parity figures, the engine's sliding-window call is wrapped: the
wrapper times it, counts its tiles and keeps the model-grid probabilities it returns (the grid
where the authors' pipeline ends), which are written after the CLI returns. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", required=True, help="comma separated")
    ap.add_argument("--dump", default="")
    a = ap.parse_args()
    t_start = time.perf_counter()
    import numpy as np

    from TextSegLib.cli.main import main as textseg_main
    from TextSegLib.engine import sat_engine

    kept: list = []
    stats = {"tiles_s": 0.0, "tiles_run": 0, "tiles_total": 0}
    inner = sat_engine.run_sliding_window

    def timed_window(*args, **kwargs):
        t = time.perf_counter()
        prob, info = inner(*args, **kwargs)
        stats["tiles_s"] += time.perf_counter() - t
        stats["tiles_run"] += int(info.get("tiles_run", 0))
        stats["tiles_total"] += int(info.get("tiles_total", 0))
        kept.append(prob)
        return prob, info

    sat_engine.run_sliding_window = timed_window
    argv = ["segment", a.image, "--model-path", a.model_path, "--modality", "ct", "--device", "cpu",
            "--precision", "fp32", "--threads", str(a.threads), "-o", a.out, "--overwrite", "-q"]
    for p in a.prompts.split(","):
        argv += ["-p", p]
    t0 = time.perf_counter()
    rc = textseg_main(argv)
    pipeline_s = time.perf_counter() - t0
    if rc not in (0, 3):
        sys.exit(f"textseg segment exited with {rc}")
    if a.dump:
        np.save(a.dump, np.concatenate([np.asarray(p, dtype=np.float32) for p in kept]))
    import torch

    print(json.dumps({"side": "textseg", "pipeline_s": pipeline_s, "rc": rc, "tiles_run": stats["tiles_run"],
                      "tiles_total": stats["tiles_total"], "forward_s": stats["tiles_s"],
                      "tile_s": stats["tiles_s"] / max(1, stats["tiles_run"]),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "in_process_s": time.perf_counter() - t_start}))


if __name__ == "__main__":
    main()
