"""Hostile clients against a real uvicorn on loopback (issue 22): prints the server's RSS after a
decompression-bomb attempt, /v1/info latency beside 1,100 slow connections and beside 64 event
streams, and the kept-alive /v1/info p50 on plain asyncio. Run: python benchmarks/bench_server_hostile.py"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "pytest"))

import requests  # noqa: E402

import test_remote_hostile as h  # noqa: E402
from _remote_helpers import KEY, SlabEngine, running_server  # noqa: E402


def info_ms(url: str) -> float:
    t = time.perf_counter()
    requests.get(f"{url}/v1/info", headers=h.auth(), timeout=10)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    engine = SlabEngine()
    with running_server(lambda: engine, api_key=KEY) as url:
        before = h.rss_mb()
        r = requests.put(f"{url}/v1/images", data=h.bomb((512, 512, 2048)), headers=h.auth(), timeout=120)
        print(f"bomb (declares 4 GiB float64): {r.status_code} {r.json()['code']}; "
              f"process RSS {before:.0f} -> {h.rss_mb():.0f} MB")
        port = int(url.rsplit(":", 1)[1])
        socks = [s for i in range(1100) if (s := h._slow(f"127.0.0.{2 + i % 4}", port)) is not None]
        print(f"/v1/info beside 1,100 slow connections: {statistics.median(info_ms(url) for _ in range(9)):.1f} ms p50")
        for s in socks:
            s.close()
    with running_server(lambda: engine, api_key=KEY, loop="asyncio") as url:
        s = requests.Session()
        s.headers.update(h.auth())
        s.get(f"{url}/v1/info")
        t = []
        for _ in range(100):
            t0 = time.perf_counter()
            s.get(f"{url}/v1/info")
            t.append((time.perf_counter() - t0) * 1000)
        print(f"kept-alive /v1/info p50 (asyncio loop): {statistics.median(t):.2f} ms")


if __name__ == "__main__":
    main()
