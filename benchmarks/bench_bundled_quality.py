"""textseg-mini quality on the held-out patient: Dice per structure and for
three paraphrases each, with prompts resolved through the knowledge tree
first (default inference path) and sent straight to MiniLM (free text).

Usage: python benchmarks/bench_bundled_quality.py [--model-path DIR] [--threads N]
Prints the tables, wall-clock seconds of each run and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from TextSegLib.models.bundled.engine import load_bundled_engine
from TextSegLib.models.bundled.evaluate import PARAPHRASES, evaluate, format_table, holdout_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path", default=None, help="textseg-mini folder (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU core(s) visible, "
          f"torch {torch.__version__}, {args.threads} thread(s), no GPU used")
    vol, refs = holdout_data()
    for use_tree in (True, False):
        engine = load_bundled_engine(args.model_path, use_tree=use_tree)
        t = time.perf_counter()
        res = evaluate(engine, vol, refs, PARAPHRASES)
        dt = time.perf_counter() - t
        how = "prompt -> knowledge tree -> cached term embedding (MiniLM if unresolved)" if use_tree \
            else "prompt -> MiniLM directly (cached only for exact term-list strings)"
        print(f"\n== {how}; {len(res['rows'])} prompts in {dt:.1f} s "
              f"(MiniLM calls: {engine.query_provider.minilm_calls}) ==")
        print(format_table(res))


if __name__ == "__main__":
    main()
