"""Ray Serve: the same app in front of two engine replicas on a local Ray cluster answers like
`textseg serve` (same masks, same API, same key), and both replicas take jobs."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from _remote_helpers import KEY, SlabEngine, free_port, running_server, small_volume
from TextSegLib.errors import RemoteError
from TextSegLib.remote import RemoteEngine

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")  # the `cohort` extra brings ray; Ray Serve needs ray[serve]

HERE = Path(__file__).parent


def make_engine():
    return SlabEngine(gate=threading.Event(), slab_wait=0.1)


@pytest.mark.slow
def test_two_replicas_answer_like_textseg_serve(monkeypatch):
    from TextSegLib.remote import ray_serve

    root = str(HERE.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), root, os.environ.get("PYTHONPATH", "")]))
    vols = [small_volume((10, 10, 12), seed=s) for s in (1, 2, 3, 4)]
    with running_server(make_engine, api_key=KEY) as url:
        plain = [RemoteEngine(url, KEY).segment(v, ["bright", "dark"]) for v in vols]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        url = ray_serve.run(port=port, replicas=2, factory=make_engine, api_key=KEY)
        assert requests.get(f"{url}/v1/info", timeout=30).status_code == 401
        info = RemoteEngine(url, KEY).info()
        assert info["model"] == "slab-threshold" and info["queue"]["devices"] == ["replica-0", "replica-1"]
        results: list = [None] * len(vols)

        def one(i: int) -> None:
            results[i] = RemoteEngine(url, KEY).segment(vols[i], ["bright", "dark"])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(vols))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for got, want in zip(results, plain):
            for p in ("bright", "dark"):
                assert np.array_equal(got.masks[p], want.masks[p])
        assert len({r.info["replica_pid"] for r in results}) == 2  # both replicas served
        with pytest.raises(RemoteError, match="refused the API key"):
            RemoteEngine(url, "wrong-key-0000").info()
    finally:
        serve.shutdown()
        ray.shutdown()
