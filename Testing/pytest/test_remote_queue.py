"""Shared-server behaviour on a real uvicorn: fair FIFO queue, limits, devices, upload once, codes, events."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests

from _remote_helpers import SlabEngine, running_server, small_volume
from TextSegLib.errors import ModalityError, RemoteError
from TextSegLib.remote import RemoteEngine, protocol
from TextSegLib.remote.client import check_api_version


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connect from a given loopback address: the server tells clients apart by address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def client_session(client: str) -> requests.Session:
    s = requests.Session()
    s.mount("http://", _FromAddress(f"127.0.0.{2 + sum(map(ord, client)) % 200}"))
    return s


def post_job(url: str, vol, prompts=("bright",), client: str = "t") -> requests.Response:
    return client_session(client).post(f"{url}/v1/jobs", data=protocol.encode_request(vol, list(prompts)),
                                       headers={"X-TextSeg-Client": client}, timeout=10)


def status(url: str, jid: str) -> dict:
    return requests.get(f"{url}/v1/jobs/{jid}", timeout=10).json()


def wait_state(url: str, jid: str, states=("done", "failed", "cancelled"), limit: float = 10.0) -> dict:
    t = time.monotonic()
    while time.monotonic() - t < limit:
        s = status(url, jid)
        if s["state"] in states:
            return s
        time.sleep(0.02)
    raise AssertionError(f"job {jid} still {s}")


def test_fifo_positions_estimates_queue_full_and_client_limit():
    gate = threading.Event()
    engine = SlabEngine(gate=gate, slab_wait=5)
    with running_server(lambda: engine, max_queued=2, per_client=2) as url:
        vol = small_volume((6, 6, 2))
        # learn a mean run time first, so estimates exist
        gate.set()
        first = post_job(url, vol).json()["id"]
        wait_state(url, first)
        gate.clear()
        ids = [post_job(url, vol, client=c).json()["id"] for c in ("a", "b", "c")]
        wait_state(url, ids[0], ("running",))
        s1, s2 = status(url, ids[1]), status(url, ids[2])
        assert (s1["state"], s1["queue_position"], s2["queue_position"]) == ("queued", 1, 2)
        assert 0 <= s1["estimated_start_s"] <= s2["estimated_start_s"] and "estimated_start" in s2
        full = post_job(url, vol, client="d")
        assert full.status_code == 503 and full.json()["code"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1
        # the per-client limit: client "a" has one running; with one queued it is at the limit of 2
        requests.delete(f"{url}/v1/jobs/{ids[2]}", timeout=10)
        assert status(url, ids[1])["queue_position"] == 1
        a2 = post_job(url, vol, client="a")
        assert a2.status_code == 202
        a3 = post_job(url, vol, client="a")
        assert a3.status_code == 429 and a3.json()["code"] == "client_limit" and "retry-after" in a3.headers
        gate.set()
        for jid in (ids[0], ids[1], a2.json()["id"]):
            assert wait_state(url, jid)["state"] == "done"
        # FIFO: the job queued first started first
        t = {j: status(url, j)["timings"] for j in (ids[1], a2.json()["id"])}
        assert t[ids[1]]["queued_s"] <= t[a2.json()["id"]]["queued_s"] + 0.5
        info = requests.get(f"{url}/v1/info", timeout=10).json()
        assert info["queue"]["stats"]["rejected_full"] == 1 and info["queue"]["stats"]["rejected_client"] == 1


def test_one_worker_per_device_runs_in_parallel():
    gate = threading.Event()
    made = []

    def factory(device: str):
        e = SlabEngine(gate=gate, slab_wait=5)
        e.device = device
        made.append(device)
        return e

    with running_server(factory, devices=["cpu:0", "cpu:1"]) as url:
        vol = small_volume((6, 6, 3))
        ids = [post_job(url, vol).json()["id"] for _ in range(3)]
        wait_state(url, ids[0], ("running",))
        wait_state(url, ids[1], ("running",))
        assert status(url, ids[2])["state"] == "queued"  # one job per device at a time
        info = requests.get(f"{url}/v1/info", timeout=10).json()["queue"]
        assert info["devices"] == ["cpu:0", "cpu:1"] and info["running"] == 2 and info["queued"] == 1
        gate.set()
        devices = {wait_state(url, j)["state"] and status(url, j)["device"] for j in ids}
        assert devices == {"cpu:0", "cpu:1"} and sorted(made) == ["cpu:0", "cpu:1"]


def test_upload_once_and_transparent_reupload_after_eviction():
    engine = SlabEngine()
    vol_a, vol_b = small_volume((64, 64, 24), seed=1), small_volume((64, 64, 24), seed=2)
    with running_server(lambda: engine, image_cache_mb=0.25) as url:  # room for one image
        client = RemoteEngine(url)
        first = client.segment(vol_a, ["bright"])
        sent_first = client.last_sent_bytes
        second = client.segment(vol_a, ["dark"])
        assert client.last_sent_bytes <= 0.01 * sent_first, (client.last_sent_bytes, sent_first)
        assert np.array_equal(second.masks["dark"], ~first.masks["bright"])
        client.segment(vol_b, ["bright"])  # evicts a
        images = requests.get(f"{url}/v1/info", timeout=10).json()["images"]
        assert images["count"] == 1 and images["evicted"] == 1
        again = client.segment(vol_a, ["bright"])  # re-uploaded transparently
        assert client.last_sent_bytes > 0.5 * sent_first and np.array_equal(again.masks["bright"], first.masks["bright"])
        # a repeat PUT is answered 200 'existed' without storing twice
        iid, body = protocol.encode_image(vol_a)
        r = requests.put(f"{url}/v1/images", data=body, timeout=10)
        assert r.status_code == 200 and r.json()["existed"] is True and r.json()["id"] == iid


def test_results_within_budget_and_ttl_shown_in_info():
    engine = SlabEngine()
    with running_server(lambda: engine, result_budget_mb=0.001, result_ttl_s=30) as url:  # ~1 kB: one result
        vol = small_volume((20, 20, 20))
        ids = [post_job(url, vol).json()["id"] for _ in range(3)]
        for j in ids:
            wait_state(url, j, limit=10) if j == ids[-1] else None
        time.sleep(0.1)
        gone = requests.get(f"{url}/v1/jobs/{ids[0]}/result", timeout=10)
        assert gone.status_code == 410 and gone.json()["code"] == "job_expired" and "budget" in gone.json()["error"]
        assert requests.get(f"{url}/v1/jobs/{ids[-1]}/result", timeout=10).status_code == 200
        res = requests.get(f"{url}/v1/info", timeout=10).json()["queue"]["results"]
        assert res["budget_bytes"] == int(0.001 * 2**20) and res["ttl_s"] == 30 and res["kept"] == 1


def test_event_stream_follows_a_job_to_the_end():
    gate = threading.Event()
    engine = SlabEngine(gate=gate, slab_wait=0.02)
    with running_server(lambda: engine) as url:
        jid = post_job(url, small_volume((6, 6, 10))).json()["id"]
        lines = []
        with requests.get(f"{url}/v1/jobs/{jid}/events", params={"heartbeat": 0.1}, stream=True, timeout=10) as r:
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(x) for x in r.iter_lines() if x]
        assert lines[-1]["state"] == "done" and sum(1 for x in lines if x["stage"] == "tiles") >= 2
        dones = [x["done"] for x in lines if x["stage"] == "tiles"]
        assert dones == sorted(dones) and lines[-1]["done"] == lines[-1]["total"] == 10
        # polling still works, and a client not streaming gets the same masks
        assert status(url, jid)["state"] == "done"
        vol = small_volume((6, 6, 10))
        a = RemoteEngine(url, stream=False).segment(vol, ["bright"])
        b = RemoteEngine(url).segment(vol, ["bright"])
        assert np.array_equal(a.masks["bright"], b.masks["bright"])


class VocabEngine(SlabEngine):
    name = "vocab-slab"
    free_text = False
    modalities = ("ct", "mri")

    def vocabulary(self, modality: str) -> list[str]:
        return ["liver", "left kidney", "right kidney", "spleen", "thyroid", "adrenal gland"]


def test_prompt_and_modality_errors_have_stable_codes():
    engine = VocabEngine()
    with running_server(lambda: engine) as url:
        vol = small_volume()
        r = post_job(url, vol, ["gland"])
        assert r.status_code == 422 and r.json()["code"] == "prompt_ambiguous" and len(r.json()["choices"]) >= 2
        r = requests.post(f"{url}/v1/jobs", json={"image": "0" * 64, "prompts": ["liver", " \t"]}, timeout=10)
        # a blank prompt is schema-invalid (ASCII whitespace only): the schema and the answer agree (400, not 422)
        assert r.status_code == 400 and r.json()["code"] == "bad_request" and "prompts.1" in r.json()["error"]
        # /v1/resolve answers 200 for every schema-valid text; one that resolves to nothing says why
        res = requests.get(f"{url}/v1/resolve", params={"text": "0"}, timeout=10)
        assert res.status_code == 200 and res.json()["resolved"] is False and res.json()["code"] == "prompt_unknown"
        res = requests.get(f"{url}/v1/resolve", params={"text": "\n"}, timeout=10)
        assert res.status_code == 400 and res.json()["code"] == "bad_request"
        r = post_job(url, vol, ["qwertyzzz blob"])
        assert r.status_code == 422 and r.json()["code"] == "prompt_unknown" and "free text" in r.json()["error"]
        body = protocol.encode_request(vol, ["liver"], modality="pet")
        r = requests.post(f"{url}/v1/jobs", data=body, timeout=10)
        assert r.status_code == 422 and r.json()["code"] == "modality_unsupported" and "PET" in r.json()["error"]
        v = requests.get(f"{url}/v1/vocabulary", params={"modality": "pet"}, timeout=10).json()
        assert v["trained_on_modality"] is False and v["terms"] == [] and v["model"] == "vocab-slab"
        v = requests.get(f"{url}/v1/vocabulary", params={"modality": "ct"}, timeout=10).json()
        assert v["trained_on_modality"] is True and "left kidney" in v["terms"] and v["free_text"] is False
        assert v["concepts"]["left kidney"]["name"] == "Left kidney" and "64033007" in v["concepts"]["left kidney"]["code"]
        res = requests.get(f"{url}/v1/resolve", params={"text": "lt kidn", "modality": "ct"}, timeout=10).json()
        assert res["prompts"][0]["term"] == "left kidney"
        # the job as created reports how each prompt was resolved
        r = post_job(url, vol, ["lt kidn"])
        assert r.status_code == 202 and r.json()["prompts"][0]["term"] == "left kidney"
        with pytest.raises(ModalityError, match="was not trained on PET"):  # checked before any upload
            RemoteEngine(url).segment(vol, ["liver"], modality="pet")


def test_api_version_checked_in_one_line():
    with pytest.raises(RemoteError) as err:
        check_api_version("http://h:1", {"server": "TextSeg", "api_version": 1, "version": "0.0.9"})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Server http://h:1 speaks TextSeg API 1 (textseg 0.0.9), this client "
                                              f"speaks API {protocol.VERSION}")
    with pytest.raises(RemoteError, match="is not a TextSeg server"):
        check_api_version("http://h:1", {"hello": "world"})
    engine = SlabEngine()
    with running_server(lambda: engine) as url:
        header, payload = protocol.unpack_message(protocol.encode_request(small_volume(), ["bright"]))
        header["version"] = 1
        r = requests.post(f"{url}/v1/jobs", data=protocol.pack_message(header, bytes(payload)), timeout=10)
        assert r.status_code == 400 and r.json()["code"] == "api_version" and "server speaks 2" in r.json()["error"]
        for path, code in (("/v1/nope", "not_found"), ("/v1/jobs/xyz", "job_unknown"), ("/v1/images/abc", "image_unknown")):
            r = requests.get(url + path, timeout=10)
            assert r.status_code == 404 and r.json()["code"] == code and r.json()["error"]
        r = requests.post(f"{url}/v1/jobs", data="{}", headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 400 and r.json()["code"] == "bad_request" and "image" in r.json()["error"]
        r = requests.post(f"{url}/v1/jobs", data="x", headers={"Content-Type": "text/plain"}, timeout=10)
        assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
