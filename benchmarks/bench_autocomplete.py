#!/usr/bin/env python
"""Autocomplete benchmark: accuracy on typed queries, keystroke latency, load time, memory.

    python benchmarks/bench_autocomplete.py [--queries benchmarks/data/autocomplete_queries.tsv]

A query counts as correct when the expected structure (looked up by its exact name in the
tree) is the first suggestion (top-1) or among the first five (top-5). Latency is measured on
every 1-4 character prefix of the queries (what the box sees while typing), over the full tree.
Targets: top-5 >= 95 %, top-1 >= 80 %, p99 <= 2 ms, load <= 200 ms, memory <= 60 MB.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def read_queries(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            q, expected, cat = line.split("\t")
            rows.append((q, expected, cat))
    return rows


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=Path, default=HERE / "data" / "autocomplete_queries.tsv")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()

    from TextSegLib.knowledge import suggest
    from TextSegLib.knowledge.tree import load_tree
    from TextSegLib.resources import resource_path

    path = resource_path("knowledge", "tree.json.gz")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
          f"load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}")
    # ---- load time and memory ----------------------------------------------------------------
    loads = []
    for _ in range(5):
        gc.collect()
        t = time.perf_counter()
        load_tree(path)
        loads.append(time.perf_counter() - t)
    gc.collect()
    tracemalloc.start()
    tree = load_tree(path)
    suggest("liver", tree=tree)  # builds the default vocabulary and lazy tables
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_names = len(tree.keys)
    print(f"tree: {len(tree)} concepts, {n_names} searchable names ({len(set(tree.keys))} distinct), "
          f"file {path.stat().st_size / 1024:.0f} KiB")
    print(f"load time: median {statistics.median(loads) * 1e3:.0f} ms, min {min(loads) * 1e3:.0f} ms "
          f"(read + gunzip + parse + index; target <= 200 ms)")
    print(f"memory: {current / 2**20:.1f} MB held after load + first query, peak {peak / 2**20:.1f} MB "
          f"(tracemalloc; target <= 60 MB)")

    # ---- accuracy ------------------------------------------------------------------------------
    rows = read_queries(args.queries)
    top1 = top5 = 0
    per_cat: dict[str, list[int]] = {}
    misses = []
    for q, expected, cat in rows:
        want = {c.id for c in tree.lookup(expected)}
        got = [s.concept.id for s in suggest(q, limit=5, tree=tree)]
        h1 = bool(got) and got[0] in want
        h5 = any(g in want for g in got)
        top1 += h1
        top5 += h5
        st = per_cat.setdefault(cat, [0, 0, 0])
        st[0] += 1
        st[1] += h1
        st[2] += h5
        if not h1:
            misses.append((q, expected, [tree.get(g).name for g in got[:3]], "top5" if h5 else "MISS"))
    n = len(rows)
    print(f"accuracy on {n} typed queries: top-1 {100 * top1 / n:.1f} %, top-5 {100 * top5 / n:.1f} % "
          f"(targets 80 % / 95 %)")
    for cat, (cn, c1, c5) in sorted(per_cat.items()):
        print(f"  {cat:<18} n={cn:<4} top-1 {100 * c1 / cn:5.1f} %  top-5 {100 * c5 / cn:5.1f} %")
    if args.show_misses:
        for m in misses:
            print("  miss:", m)

    # ---- latency -------------------------------------------------------------------------------
    prefixes = sorted({q[:k] for q, _e, _c in rows for k in range(1, 5) if len(q) >= k})
    single, med3, cpu = [], [], []
    for p in prefixes:
        runs = []
        for _ in range(3):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            suggest(p, tree=tree)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        single.append(runs[0])
        med3.append(sorted(runs)[1])
    full, full_cpu = [], []
    for q, _e, _c in rows:
        runs, cruns = [], []
        for _ in range(3):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            suggest(q, tree=tree)
            runs.append(time.perf_counter() - t0)
            cruns.append(time.thread_time() - c0)
        full.append(sorted(runs)[1])
        full_cpu.append(sorted(cruns)[1])
    print(f"latency, {len(prefixes)} distinct 1-4 character inputs, full tree, limit 10 (target p99 <= 2 ms):")
    print(f"  median-of-3 per input: p50 {pct(med3, 50) * 1e3:.2f} ms, p99 {pct(med3, 99) * 1e3:.2f} ms, "
          f"max {max(med3) * 1e3:.2f} ms")
    print(f"  single shot (wall):    p50 {pct(single, 50) * 1e3:.2f} ms, p99 {pct(single, 99) * 1e3:.2f} ms")
    print(f"  CPU time per call:     p50 {pct(cpu, 50) * 1e3:.2f} ms, p99 {pct(cpu, 99) * 1e3:.2f} ms")
    print(f"latency, {len(full)} full queries (median of 3): p50 {pct(full, 50) * 1e3:.2f} ms, "
          f"p99 {pct(full, 99) * 1e3:.2f} ms; CPU p99 {pct(full_cpu, 99) * 1e3:.2f} ms")
    print("(single-shot wall times include waiting for a CPU on a shared, loaded machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
