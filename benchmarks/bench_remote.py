"""Remote overhead: textseg-mini locally vs through a real loopback `textseg serve`-style server.

Prints wall times, wire sizes and mask agreement for example_ct_sm.nii.gz.
Usage: python benchmarks/bench_remote.py [--prompts liver,spleen] [--repeat 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing" / "pytest"))

from _remote_helpers import KEY, dice, running_server  # noqa: E402
from TextSegLib.io import read_volume  # noqa: E402
from TextSegLib.models.bundled import load_bundled_engine  # noqa: E402
from TextSegLib.remote import RemoteEngine, protocol  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", default="liver,spleen")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    prompts = [p.strip() for p in args.prompts.split(",")]
    vol = read_volume(str(ROOT / "Testing/Data/totalsegmentator/example_ct_sm.nii.gz"), modality="ct")
    engine = load_bundled_engine(threads=2)
    raw = vol.array.nbytes
    t = time.perf_counter()
    body = protocol.encode_request(vol, prompts)
    enc = time.perf_counter() - t
    print(f"volume {vol.shape} {vol.array.dtype}: raw {raw / 1e6:.2f} MB, upload {len(body) / 1e6:.2f} MB "
          f"(zlib-1 encode {enc * 1000:.0f} ms)")
    local_t, remote_t = [], []
    with running_server(lambda: engine, api_key=KEY) as url:
        client = RemoteEngine(url, KEY, poll_interval=0.05)
        for _ in range(args.repeat):
            t = time.perf_counter()
            local = engine.segment(vol, prompts)
            local_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = client.segment(vol, prompts)
            remote_t.append(time.perf_counter() - t)
    print(f"local  segment: best {min(local_t):.2f} s of {args.repeat}")
    print(f"remote segment: best {min(remote_t):.2f} s of {args.repeat} "
          f"(upload {res.timings['upload'] * 1000:.0f} ms, download {res.timings['download'] * 1000:.0f} ms, "
          f"result {res.info['result_bytes'] / 1e3:.1f} kB for {len(prompts)} bit-packed masks)")
    print("overhead: " + f"{(min(remote_t) - min(local_t)) * 1000:+.0f} ms; Dice remote vs local: "
          + ", ".join(f"{p} {dice(res.masks[p], local.masks[p]):.4f}" for p in prompts)
          + f"; identical: {all(np.array_equal(res.masks[p], local.masks[p]) for p in prompts)}")


if __name__ == "__main__":
    main()
