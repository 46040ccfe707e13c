"""Peak memory and time of one full-size SAT tile on the CPU.

Runs SAT-Nano (random weights; memory and time do not depend on the values)
on one 1x3x288x288x96 tile with 4 queries under ``torch.inference_mode`` in a
fresh subprocess and prints the child's peak RSS (ru_maxrss) and seconds.

    python benchmarks/bench_sat_tile.py [--variant nano] [--queries 4] [--plain] [--threads N]

``--plain`` disables the low-memory (slab) path for comparison.
Reference: the authors' code needs about 13.8 GB for this tile; target <= 6.9 GB.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB


def child(args: argparse.Namespace) -> None:
    import torch

    from TextSegLib.models.sat import build_sat

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_sat(args.variant).eval()
    model.low_memory = not args.plain
    size = model.config.patch_size
    image = torch.randn(1, 3, *size)
    queries = torch.randn(args.queries, model.config.query_dim)
    rss_model = _rss_gb()
    with torch.inference_mode():
        t0 = time.perf_counter()
        feats = model.encode_image(image)
        t1 = time.perf_counter()
        logits = model.decode(feats, queries)
        t2 = time.perf_counter()
    assert logits.shape == (1, args.queries, *size) and torch.isfinite(logits).all()
    print(json.dumps({"encode_s": t1 - t0, "decode_s": t2 - t1, "tile_s": t2 - t0, "rss_after_build_gb": rss_model,
                      "peak_rss_gb": _rss_gb(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "tile": [1, 3, *size], "queries": args.queries, "low_memory": not args.plain}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="nano", choices=["nano", "pro"])
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    cmd = [sys.executable, __file__, "--child", "--variant", args.variant, "--queries", str(args.queries),
           "--threads", str(args.threads)] + (["--plain"] if args.plain else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark child failed (rc {out.returncode}):\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"machine: {platform.machine()}, CPU only, torch {r['torch']}, {r['threads']} threads")
    print(f"SAT-{args.variant} tile {r['tile']} x {r['queries']} queries, low_memory={r['low_memory']}")
    print(f"  seconds per tile     : {r['tile_s']:.1f}  (backbone {r['encode_s']:.1f}, "
          f"decode of all queries {r['decode_s']:.2f})")
    print(f"  peak RSS (process)   : {r['peak_rss_gb']:.2f} GiB  (after building the model: "
          f"{r['rss_after_build_gb']:.2f} GiB)")
    print("  target <= 6.9 GB; the authors' code: 13.8 GB")


if __name__ == "__main__":
    main()
