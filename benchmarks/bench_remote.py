"""Remote server figures: volume codecs, upload-once bytes, load (8 clients × 25 requests), and the
bundled model locally vs through a real loopback server.

Usage::

    python benchmarks/bench_remote.py codecs            # zlib-1 vs zstd-1 vs blosc2 on the test scans
    python benchmarks/bench_remote.py upload            # bytes sent by the first and second job on a scan
    python benchmarks/bench_remote.py load [--clients 8 --requests 25 --service-s 0.05]
    python benchmarks/bench_remote.py bundled [--prompts liver,spleen]

Everything runs on 127.0.0.1 only and is bounded in time and request count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing" / "pytest"))

from _remote_helpers import KEY, SlabEngine, dice, run_load, running_server  # noqa: E402
from TextSegLib.io import read_volume  # noqa: E402
from TextSegLib.remote import RemoteEngine, protocol  # noqa: E402

SCANS = ["Testing/Data/totalsegmentator/example_ct_sm.nii.gz", "Testing/Data/totalsegmentator/example_mr_sm.nii.gz",
         "Testing/Data/totalsegmentator/example_ct_dicom"]


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def codecs(repeat: int) -> None:
    print(f"{'scan':<22} {'shape':<16} {'raw MB':>7} {'codec':<7} {'ratio':>6} {'enc MB/s':>9} {'dec MB/s':>9}")
    for rel in SCANS:
        vol = read_volume(str(ROOT / rel), modality=None)
        name, raw = protocol.wire_array(vol)
        itemsize = np.dtype(name).itemsize
        for codec in ("zlib", "zstd", "blosc2"):
            data = protocol.compress_bytes(raw, codec, itemsize)
            enc = _best(lambda: protocol.compress_bytes(raw, codec, itemsize), repeat)
            dec = _best(lambda: protocol._decompress(memoryview(data), codec, len(raw), "bench"), repeat)
            mb = len(raw) / 1e6
            print(f"{Path(rel).name:<22} {str(vol.shape):<16} {mb:7.2f} {codec:<7} {len(raw) / len(data):6.2f} "
                  f"{mb / enc:9.0f} {mb / dec:9.0f}")


def upload() -> None:
    vol = read_volume(str(ROOT / SCANS[0]), modality="ct")
    engine = SlabEngine()
    with running_server(lambda: engine) as url:
        client = RemoteEngine(url)
        client.segment(vol, ["bright"])
        first = client.last_sent_bytes
        client.segment(vol, ["dark"])
        second = client.last_sent_bytes
    print(f"{Path(SCANS[0]).name} {vol.shape}: first job sent {first:,} bytes, second job on the same scan "
          f"{second:,} bytes ({100 * second / first:.3f} %)")


def load(clients: int, requests_each: int, service_s: float, budget_s: float) -> None:
    engine = SlabEngine(service_s=service_s)
    from _remote_helpers import small_volume

    vol = small_volume((64, 64, 16))
    with running_server(lambda: engine, max_queued=max(64, clients)) as url:
        out = run_load(url, vol, ["bright"], clients=clients, requests_each=requests_each, budget_s=budget_s)
    mean = out["client_mean_s"]
    print(f"{clients} clients × {requests_each} requests (one worker, engine {service_s * 1000:.0f} ms/job): "
          f"{out['completed']}/{out['requests']} done, {len(out['errors'])} errors, wall {out['wall_s']:.1f} s")
    print(f"per-client completion: mean {mean:.1f} s, min {out['client_min_s']:.1f} s, max {out['client_max_s']:.1f} s "
          f"(max/mean {out['client_max_s'] / mean:.2f}, min/mean {out['client_min_s'] / mean:.2f})")
    print(f"queue wait: p50 {out['queue_wait_p50_s']:.3f} s, p95 {out['queue_wait_p95_s']:.3f} s, "
          f"max {out['queue_wait_max_s']:.3f} s")
    for e in out["errors"][:5]:
        print("  error:", e)


def bundled(prompts: list[str], repeat: int) -> None:
    from TextSegLib.models.bundled import load_bundled_engine

    vol = read_volume(str(ROOT / SCANS[0]), modality="ct")
    engine = load_bundled_engine(threads=2)
    local_t, remote_t = [], []
    with running_server(lambda: engine, api_key=KEY) as url:
        client = RemoteEngine(url, KEY, poll_interval=0.05)
        for _ in range(repeat):
            t = time.perf_counter()
            local = engine.segment(vol, prompts)
            local_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = client.segment(vol, prompts)
            remote_t.append(time.perf_counter() - t)
    print(f"local  segment: best {min(local_t):.2f} s of {repeat}")
    print(f"remote segment: best {min(remote_t):.2f} s of {repeat} (upload {res.timings['upload'] * 1000:.0f} ms, "
          f"download {res.timings['download'] * 1000:.0f} ms, result {res.info['result_bytes'] / 1e3:.1f} kB)")
    print("Dice remote vs local: " + ", ".join(f"{p} {dice(res.masks[p], local.masks[p]):.4f}" for p in prompts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["codecs", "upload", "load", "bundled"])
    ap.add_argument("--prompts", default="liver,spleen")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--service-s", type=float, default=0.05)
    ap.add_argument("--budget-s", type=float, default=300.0)
    args = ap.parse_args()
    if args.what == "codecs":
        codecs(args.repeat)
    elif args.what == "upload":
        upload()
    elif args.what == "load":
        load(args.clients, args.requests, args.service_s, args.budget_s)
    else:
        bundled([p.strip() for p in args.prompts.split(",")], args.repeat)


if __name__ == "__main__":
    main()
