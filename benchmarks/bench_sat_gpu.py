"""Seconds and GPU memory per SAT tile on a CUDA device, and what that means per scan.

Builds SAT-Nano and SAT-Pro with random weights (time and memory do not
depend on the values), runs one full-size tile (1x3x288x288x96) with N
text queries under ``torch.inference_mode`` at each precision the engine
offers on CUDA (fp32, and fp16 / bf16 autocast through
``TextSegLib.engine.device``), and prints the median of ``--repeats`` warm
runs (after one warm-up), split into backbone (``encode_image``) and
query decoding, plus the peak CUDA memory. The per-scan estimate multiplies
by the tile count of ``TextSegLib.engine.sliding_window.tile_boxes`` for a
512x512x300 CT at 0.78x0.78x1 mm, resampled to SAT's 1x1x3 mm grid
(400x400x100 voxels).

    python benchmarks/bench_sat_gpu.py [--variants nano,pro] [--queries 1,16] [--repeats 5]

Without a GPU it says so and exits (the CPU figures come from
``bench_sat_tile.py``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from TextSegLib.engine.device import autocast_factory, resolve_precision
from TextSegLib.engine.sliding_window import tile_boxes
from TextSegLib.models.sat import build_sat

SCAN_GRID = (400, 400, 100)  # 512x512x300 at 0.78x0.78x1 mm on SAT's 1x1x3 mm grid


def _timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def run(variant: str, queries: list[int], precisions: list[str], repeats: int) -> list[dict]:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_sat(variant).eval().to(dev)
    model.low_memory = False  # the GPU has the memory; the slab path is for CPUs
    size = model.config.patch_size
    tiles = len(tile_boxes(SCAN_GRID, size))
    image = torch.randn(1, 3, *size, device=dev)
    rows = []
    for precision in precisions:
        dtype = resolve_precision(dev, precision)
        autocast = autocast_factory(dev, dtype)
        for n in queries:
            q = torch.randn(n, model.config.query_dim, device=dev)
            torch.cuda.reset_peak_memory_stats()
            enc, dec = [], []
            with torch.inference_mode(), autocast():
                for i in range(repeats + 1):
                    t_e, feats = _timed(lambda: model.encode_image(image))
                    t_d, logits = _timed(lambda: model.decode(feats, q))
                    if i:  # the first run warms up kernels and the allocator
                        enc.append(t_e)
                        dec.append(t_d)
            assert logits.shape == (1, n, *size) and bool(torch.isfinite(logits.float()).all())
            e, d = statistics.median(enc), statistics.median(dec)
            rows.append({"variant": variant, "precision": precision, "queries": n, "encode_s": round(e, 4),
                         "decode_s": round(d, 4), "tile_s": round(e + d, 4),
                         "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                         "tiles_per_scan": tiles, "scan_s_estimate": round(tiles * (e + d), 2)})
            print(json.dumps(rows[-1]), flush=True)
            del feats, logits
    del model
    torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="nano,pro")
    ap.add_argument("--queries", default="1,16")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA GPU here: nothing to measure (CPU figures: benchmarks/bench_sat_tile.py).")
        return
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"tile {SCAN_GRID} scan grid -> {len(tile_boxes(SCAN_GRID, (288, 288, 96)))} tiles of 288x288x96")
    for v in args.variants.split(","):
        run(v.strip(), [int(x) for x in args.queries.split(",")], args.precisions.split(","), args.repeats)


if __name__ == "__main__":
    main()
