"""Load on a real loopback server: 8 clients × 25 requests each, one worker, a fixed-time engine."""
from __future__ import annotations

import pytest

from _remote_helpers import SlabEngine, run_load, running_server, small_volume


@pytest.mark.slow
def test_eight_clients_25_requests_fair_and_error_free():
    engine = SlabEngine(service_s=0.02)
    vol = small_volume((32, 32, 8))
    with running_server(lambda: engine, max_queued=64) as url:
        out = run_load(url, vol, ["bright"], clients=8, requests_each=25, budget_s=240)
    assert out["errors"] == [] and out["completed"] == 200
    mean = out["client_mean_s"]
    assert out["client_max_s"] <= 2 * mean and out["client_min_s"] >= mean / 2, out["client_s"]
    first_uploads = sorted(out["sent_bytes"])[-8:]  # each client uploads once at most, the rest are ids
    assert sum(1 for b in out["sent_bytes"] if b > 2000) <= 8 and min(first_uploads) >= 0
    print(f"load: wall {out['wall_s']:.1f} s, client mean {mean:.1f} s (min {out['client_min_s']:.1f}, "
          f"max {out['client_max_s']:.1f}), queue wait p50 {out['queue_wait_p50_s']:.3f} s, "
          f"p95 {out['queue_wait_p95_s']:.3f} s")
