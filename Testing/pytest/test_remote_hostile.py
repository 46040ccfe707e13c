"""Hostile clients on a real uvicorn (issue 22): a decompression bomb, slow connections, many event
streams, kept-alive latency. Loopback addresses only; every loop is bounded."""
from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time

import numpy as np
import pytest
import requests

from _remote_helpers import KEY, SlabEngine, running_server, small_volume
from TextSegLib.remote import protocol


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bomb(shape=(512, 512, 256)) -> bytes:
    """A tiny blosc2 frame of zeros whose header declares ``shape`` float64."""
    import blosc2

    n = shape[0] * shape[1] * shape[2] * 8
    sc = blosc2.SChunk(chunksize=64 << 20, cparams={"typesize": 8, "clevel": 9})
    zeros = bytes(64 << 20)
    for _ in range(n // len(zeros)):
        sc.append_data(zeros)
    header = {"version": protocol.VERSION, "shape": list(shape), "dtype": "float64",
              "ijk_to_ras": np.eye(4).tolist(), "compression": "blosc2"}
    return protocol.pack_message(header, sc.to_cframe())


def test_decompression_bomb_is_refused_before_it_is_decoded():
    pytest.importorskip("blosc2")
    engine = SlabEngine()
    body = bomb()  # declares 512 MiB
    assert len(body) < 200_000
    with running_server(lambda: engine, api_key=KEY, memory_budget_mb=256) as url:
        before = rss_mb()
        r = requests.put(f"{url}/v1/images", data=body, headers=auth(), timeout=60)
        assert r.status_code == 413 and r.json()["code"] == "memory_limit", r.text
        assert rss_mb() - before < 100
        info = requests.get(f"{url}/v1/info", headers=auth(), timeout=10).json()
        assert info["memory"]["in_flight_bytes"] == 0 and info["memory"]["refused"]["memory_limit"] == 1
        # a normal upload still works afterwards
        iid, ok = protocol.encode_image(small_volume())
        assert requests.put(f"{url}/v1/images", data=ok, headers=auth(), timeout=10).status_code == 201


def test_payload_holding_more_than_declared_is_stopped():
    vol = small_volume((8, 8, 4), dtype=np.uint8)
    name, raw = protocol.wire_array(vol)
    import zlib
    header = {"version": protocol.VERSION, **protocol.geometry_header(vol.shape, name, vol.ijk_to_ras),
              "compression": "zlib"}
    body = protocol.pack_message(header, zlib.compress(raw + bytes(50 << 20)))
    with pytest.raises(protocol.ProtocolError, match="more than"):
        protocol.decode_image(body)


def _slow(address: str, port: int) -> socket.socket | None:
    s = socket.socket()
    s.setblocking(True)
    try:
        s.bind((address, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        s.send(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
    except OSError:
        s.close()
        return None
    return s


def test_slow_connections_do_not_lock_out_a_client():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 and hard >= 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 3000:
        pytest.skip("this test process cannot open 3,000 descriptors")
    engine = SlabEngine()
    with running_server(lambda: engine, api_key=KEY) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = [s for i in range(1100) if (s := _slow(f"127.0.0.{2 + i % 4}", port)) is not None]
        try:
            time.sleep(0.5)
            t = time.perf_counter()
            r = requests.get(f"{url}/v1/info", headers=auth(), timeout=5)
            took = time.perf_counter() - t
            assert r.status_code == 200 and took < 1.0, (r.status_code, took)
            conns = r.json()["connections"]
            assert conns["open"] <= 4 * 64 + 4 and conns.get("refused_address", 0) >= 1100 - 4 * 64
        finally:
            for s in socks:
                s.close()


def test_half_sent_head_is_closed_after_the_header_timeout():
    from TextSegLib.remote.connections import ConnectionLimits

    engine = SlabEngine()
    with running_server(lambda: engine, connection_limits=ConnectionLimits(header_timeout_s=0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        s = _slow("127.0.0.1", port)
        s.settimeout(5)
        t = time.perf_counter()
        assert s.recv(100) == b""  # closed by the server
        assert time.perf_counter() - t < 4
        s.close()


def test_many_event_streams_do_not_starve_a_normal_client():
    from TextSegLib.remote import RemoteEngine

    gate = threading.Event()
    engine = SlabEngine(gate=gate, slab_wait=30)
    with running_server(lambda: engine, api_key=KEY, max_queued=8) as url:
        port = int(url.rsplit(":", 1)[1])
        vol = small_volume((6, 6, 2))
        r = requests.post(f"{url}/v1/jobs", data=protocol.encode_request(vol, ["bright"]), headers=auth(), timeout=10)
        jid = r.json()["id"]  # held running by the gate
        conns = []
        for i in range(64):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(f"127.0.0.{2 + i % 4}", 0))
            c.request("GET", f"/v1/jobs/{jid}/events?heartbeat=30", headers=auth())
            resp = c.getresponse()
            assert resp.status == 200
            resp.readline()
            conns.append(c)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
        c.request("GET", f"/v1/jobs/{jid}/events", headers=auth())
        over = c.getresponse()
        assert over.status == 429 and json.loads(over.read())["code"] == "too_many_streams"
        try:
            t = time.perf_counter()
            assert requests.get(f"{url}/v1/info", headers=auth(), timeout=5).status_code == 200
            assert time.perf_counter() - t < 1.0
            requests.delete(f"{url}/v1/jobs/{jid}", headers=auth(), timeout=10)
            gate.set()
            res = RemoteEngine(url, KEY, timeout=20).segment(vol, ["bright"])
            assert res.masks["bright"].shape == vol.shape
        finally:
            gate.set()
            for c in conns:
                c.close()


def test_kept_alive_requests_do_not_wait_for_delayed_acks():
    engine = SlabEngine()
    with running_server(lambda: engine, api_key=KEY, loop="asyncio") as url:  # plain asyncio, as without uvloop
        s = requests.Session()
        s.headers.update(auth())
        s.get(f"{url}/v1/info", timeout=10)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            s.get(f"{url}/v1/info", timeout=10)
            times.append(time.perf_counter() - t)
        assert statistics.median(times) < 0.02, statistics.median(times)  # Nagle + delayed ACK: ~44 ms


def test_fairness_ignores_the_client_header():
    gate = threading.Event()
    engine = SlabEngine(gate=gate, slab_wait=5)
    with running_server(lambda: engine, per_client=1) as url:
        vol = small_volume((6, 6, 2))
        body = protocol.encode_request(vol, ["bright"])
        a = requests.post(f"{url}/v1/jobs", data=body, headers={"X-TextSeg-Client": "a"}, timeout=10)
        b = requests.post(f"{url}/v1/jobs", data=body, headers={"X-TextSeg-Client": "b"}, timeout=10)
        gate.set()
        assert a.status_code == 202 and b.status_code == 429 and b.json()["code"] == "client_limit"


def test_api_key_of_spaces_is_refused():
    from TextSegLib.errors import RemoteError
    from TextSegLib.remote.auth import check_bind, key_from_env

    with pytest.raises(RemoteError, match="shorter than 8"):
        check_bind("0.0.0.0", key_from_env("          "))
    assert key_from_env("  long-enough-key  ") == "long-enough-key"
