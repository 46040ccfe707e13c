"""A real uvicorn server on 127.0.0.1 with a fast slab engine: auth, limits, errors, jobs, cancel."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests

from _remote_helpers import KEY, SlabEngine, free_port, running_server, small_volume
from TextSegLib.engine.base import CancelToken, Engine
from TextSegLib.errors import CancelledError, RemoteError, TerminologyError
from TextSegLib.remote import RemoteEngine, protocol, test_connection


@pytest.fixture(scope="module")
def gate():
    return threading.Event()


@pytest.fixture(scope="module")
def server(gate):
    engine = SlabEngine(gate=gate, slab_wait=0.05)
    with running_server(lambda: engine, api_key=KEY, max_upload_mb=0.05, max_voxels=20_000) as url:
        yield url, engine


@pytest.fixture()
def fast(gate):
    gate.set()  # slabs do not wait
    yield
    gate.clear()


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def test_health_and_info(server):
    url, _ = server
    assert requests.get(f"{url}/v1/health", timeout=10).json() == {"status": "ok"}
    info = requests.get(f"{url}/v1/info", headers=auth(), timeout=10).json()
    assert info["server"] == "TextSeg" and info["model"] == "slab-threshold" and info["device"] == "cpu"
    assert info["vocabulary_size"] == {"ct": 2, "mri": 2, "pet": 2}
    assert info["limits"]["max_voxels"] == 20_000
    assert RemoteEngine(url, KEY).vocabulary("CT") == ["bright", "dark"]


def test_segment_round_trip_matches_local(server, fast):
    url, engine = server
    vol = small_volume()
    remote = RemoteEngine(url, KEY, probabilities=True)
    assert isinstance(remote, Engine)
    seen = []
    res = remote.segment(vol, ["bright", "dark"], progress=lambda s, d, t: seen.append((s, d, t)))
    local = engine.segment(vol, ["bright", "dark"])
    for p in ("bright", "dark"):
        assert res.masks[p].shape == vol.shape and res.masks[p].dtype == bool
        assert np.array_equal(res.masks[p], local.masks[p])
        assert np.allclose(res.probabilities[p].astype(np.float32), local.probabilities[p], atol=1 / 255)
    assert seen[0] == ("upload", 0, 1) and ("upload", 1, 1) in seen
    assert res.info["engine"] == "slab-threshold" and "server_total" in res.timings and res.timings["total"] > 0
    assert remote.name == f"slab-threshold @ {url}" or remote.name == f"remote {url}"


def test_one_shot_segment_endpoint_and_result_kept_until_deleted(server, fast):
    url, _ = server
    vol = small_volume()
    r = requests.post(f"{url}/v1/segment", data=protocol.encode_request(vol, ["bright"]), headers=auth(), timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == protocol.CONTENT_TYPE
    masks, probs, _, _ = protocol.decode_result(r.content)
    assert np.array_equal(masks["bright"], vol.array > vol.array.astype(np.float32).mean()) and probs == {}
    r = requests.post(f"{url}/v1/jobs", data=protocol.encode_request(vol, ["dark"]), headers=auth(), timeout=30)
    jid = r.json()["id"]
    for _ in range(200):
        if requests.get(f"{url}/v1/jobs/{jid}", headers=auth(), timeout=10).json()["state"] == "done":
            break
        time.sleep(0.05)
    assert requests.get(f"{url}/v1/jobs/{jid}/result", headers=auth(), timeout=10).status_code == 200
    again = requests.get(f"{url}/v1/jobs/{jid}/result", headers=auth(), timeout=10)  # ST302: still there
    assert again.status_code == 200 and again.content
    assert requests.get(f"{url}/v1/jobs/{jid}", headers=auth(), timeout=10).json()["state"] == "done"
    assert requests.delete(f"{url}/v1/jobs/{jid}", headers=auth(), timeout=10).json()["deleted"] is True
    for path in (f"/v1/jobs/{jid}", f"/v1/jobs/{jid}/result"):  # ST301: deleted means gone
        gone = requests.get(f"{url}{path}", headers=auth(), timeout=10)
        assert gone.status_code == 404 and gone.json() == {"code": "job_unknown", "error": f"Job {jid} was deleted."}
    assert server_jobs_empty(url)


def server_jobs_empty(url: str) -> bool:
    return requests.get(f"{url}/v1/info", headers=auth(), timeout=10).json()["busy"] is False


@pytest.mark.parametrize("key", [None, "wrong-key-123456"])
def test_wrong_or_missing_key_is_401(server, key):
    url, _ = server
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    r = requests.get(f"{url}/v1/info", headers=headers, timeout=10)
    assert r.status_code == 401 and "API key" in r.json()["error"] and r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(RemoteError, match="refused the API key"):
        RemoteEngine(url, key).segment(small_volume(), ["bright"])


def test_oversize_upload_is_413_before_and_while_reading(server):
    url, _ = server
    big = small_volume((40, 40, 12), dtype=np.float64)  # 19,200 voxels × 8 bytes = 150 kB > 0.05 MB
    with pytest.raises(RemoteError, match="413.*larger than this server's limit of 0.05 MB"):
        RemoteEngine(url, KEY, compress=False).segment(big, ["bright"])
    body = protocol.encode_request(big, ["bright"], compress=False)
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))  # chunked: no Content-Length
    r = requests.post(f"{url}/v1/jobs", data=chunks, headers=auth(), timeout=10)
    assert r.status_code == 413 and "--max-upload-mb" in r.json()["error"]
    with pytest.raises(RemoteError, match="413.*exceed this server's limit of 20,000"):
        RemoteEngine(url, KEY).segment(small_volume((30, 30, 30), dtype=np.uint8), ["bright"])


def test_malformed_upload_is_400_with_specific_message(server):
    url, _ = server
    r = requests.post(f"{url}/v1/jobs", data=b"\x80\x04pickle-me", headers=auth(), timeout=10)
    assert r.status_code == 400 and "magic bytes" in r.json()["error"]
    header, payload = protocol.unpack_message(protocol.encode_request(small_volume(), ["bright"], compress=False))
    header["dtype"] = "float64"
    r = requests.post(f"{url}/v1/jobs", data=protocol.pack_message(header, bytes(payload)), headers=auth(), timeout=10)
    assert r.status_code == 400 and "shape × dtype needs 7,680" in r.json()["error"]
    r = requests.get(f"{url}/v1/vocabulary", params={"modality": "xray"}, headers=auth(), timeout=10)
    assert r.status_code == 400 and r.json() == {"code": "bad_request", "error": "query.modality (got 'xray'): "
                                                                         "Input should be 'ct', 'mri' or 'pet'."}


def test_engine_error_reaches_the_client(server, fast):
    url, _ = server
    with pytest.raises(RemoteError, match="422.*cannot segment \\['liver'\\]"):
        RemoteEngine(url, KEY).segment(small_volume(), ["liver"])
    with pytest.raises(TerminologyError):
        RemoteEngine(url, KEY).segment(small_volume(), ["  "])  # checked locally, nothing uploaded


def test_cancel_stops_the_running_job_within_a_slab(server, gate):
    url, engine = server
    gate.clear()  # each slab now waits 0.05 s: 60 slabs = 3 s uncancelled
    vol = small_volume((10, 10, 60))
    token, events, errors = CancelToken(), [], []
    remote = RemoteEngine(url, KEY, poll_interval=0.05)

    def run():
        try:
            remote.segment(vol, ["bright"], progress=lambda s, d, t: events.append((s, d, t)), cancel=token)
        except BaseException as exc:
            errors.append(exc)

    before = engine.slabs_run
    t = threading.Thread(target=run)
    t.start()
    for _ in range(200):
        if any(s == "tiles" and d >= 2 for s, d, _ in events):
            break
        time.sleep(0.02)
    # a second job while one runs waits in the queue, position 1; deleting it removes it from the queue
    r = requests.post(f"{url}/v1/jobs", data=protocol.encode_request(small_volume(), ["bright"]), headers=auth(),
                      timeout=10)
    queued = requests.get(f"{url}/v1/jobs/{r.json()['id']}", headers=auth(), timeout=10).json()
    assert queued["state"] == "queued" and queued["queue_position"] == 1
    assert requests.delete(f"{url}/v1/jobs/{queued['id']}", headers=auth(), timeout=10).json()["state"] == "cancelled"
    assert requests.get(f"{url}/v1/info", headers=auth(), timeout=10).json()["queue"]["queued"] == 0
    t0 = time.perf_counter()
    token.cancel()
    t.join(5)
    assert not t.is_alive() and isinstance(errors[0], CancelledError)
    for _ in range(100):  # the server stops within one slab of the DELETE
        if server_jobs_empty(url):
            break
        time.sleep(0.02)
    assert time.perf_counter() - t0 < 1.0
    assert 2 <= engine.slabs_run - before < 20


def test_test_connection_messages(server):
    url, _ = server
    ok, msg = test_connection(url, KEY)
    assert ok and msg == f"Connected to TextSeg server 0.1.0 at {url}, model slab-threshold on cpu"
    assert test_connection(url, "nope-nope-nope") == (False, "The server refused the API key.")
    port = free_port()
    ok, msg = test_connection(f"http://127.0.0.1:{port}", KEY)
    assert not ok and msg == (f"Could not reach http://127.0.0.1:{port}: connection refused. "
                              "Check the URL and that `textseg serve` is running.")
    ok, msg = test_connection("ftp://example", KEY)
    assert not ok and "not an http:// or https:// address" in msg


def test_unfetched_results_expire_after_the_ttl():
    engine = SlabEngine()
    with running_server(lambda: engine, result_ttl_s=0.2) as url:  # no key: loopback test server
        r = requests.post(f"{url}/v1/jobs", data=protocol.encode_request(small_volume(), ["bright"]), timeout=10)
        jid = r.json()["id"]
        for _ in range(100):
            if requests.get(f"{url}/v1/jobs/{jid}", timeout=10).json()["state"] == "done":
                break
            time.sleep(0.02)
        time.sleep(0.3)
        r = requests.get(f"{url}/v1/jobs/{jid}/result", timeout=10)
        assert r.status_code == 410 and "expired" in r.json()["error"] and r.json()["code"] == "job_expired"
