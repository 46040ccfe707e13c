"""Helpers for the remote tests: a real uvicorn server on a free loopback port, and a slab engine."""
from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from TextSegLib.engine.base import CancelToken, EngineResult, ProgressCallback
from TextSegLib.errors import TerminologyError
from TextSegLib.volume import Volume

KEY = "test-key-0123456789"


@contextlib.contextmanager
def running_server(engine_factory: Callable, loop: str = "auto", **app_kwargs) -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` of a real uvicorn server (as ``textseg serve`` configures it,
    on uvicorn's ``loop``); stop it afterwards."""
    import uvicorn

    from TextSegLib.remote.connections import uvicorn_config
    from TextSegLib.remote.server import create_app

    app = create_app(engine_factory, **app_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, lifespan="off", loop=loop))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):  # up to ~10 s for startup
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.state.jobs.stop()


def free_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlabEngine:
    """Deterministic Engine: ``"bright"`` = voxels above the mean, ``"dark"`` = below;
    works slab by slab along K with a cancel check per slab. ``gate`` (if given) is
    waited on before each slab, so a test can hold a job 'running'."""

    name = "slab-threshold"
    device = "cpu"

    def __init__(self, gate: threading.Event | None = None, slab_wait: float = 0.0, service_s: float = 0.0) -> None:
        self.gate = gate
        self.slab_wait = slab_wait
        self.service_s = service_s  # fixed extra time per job (a stand-in for model time in load tests)
        self.slabs_run = 0

    def vocabulary(self, modality: str) -> list[str]:
        return ["bright", "dark"]

    def segment(self, volume: Volume, prompts: Sequence[str], *, modality: str | None = None, roi_ras=None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> EngineResult:
        terms = {getattr(p, "text", p): getattr(p, "term", p) for p in prompts}  # ResolvedPrompt or str
        bad = [t for t in terms.values() if t not in ("bright", "dark")]
        if bad:
            raise TerminologyError(f"{self.name} cannot segment {bad}.", "It knows: bright, dark.")
        a = volume.array.astype(np.float32)
        mean = float(a.mean())
        masks = {p: np.zeros(a.shape, bool) for p in terms}
        nk = a.shape[2]
        for k in range(nk):
            if cancel is not None:
                cancel.check()
            if self.gate is not None:
                self.gate.wait(self.slab_wait)
            if self.service_s:
                time.sleep(self.service_s / nk)
            for p, t in terms.items():
                masks[p][:, :, k] = a[:, :, k] > mean if t == "bright" else a[:, :, k] <= mean
            self.slabs_run += 1
            if progress:
                progress("tiles", k + 1, nk)
        probs = {p: m.astype(np.float32) * 0.8 for p, m in masks.items()}
        return EngineResult(masks=masks, probabilities=probs, timings={"total": 0.0},
                            info={"engine": self.name, "device": "cpu", "slabs": nk})


def small_volume(shape: tuple[int, int, int] = (12, 10, 8), dtype=np.int16, seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    m = np.array([[0, 0.8, 0, -10], [-0.7, 0, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]], float)  # oblique-ish, anisotropic
    return Volume(rng.integers(-1000, 1000, shape).astype(dtype), m, "ct", name="small")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def run_load(url: str, volume: Volume, prompts: Sequence[str], *, clients: int = 8, requests_each: int = 25,
             api_key: str | None = None, budget_s: float = 300.0) -> dict:
    """``clients`` threads, each a RemoteEngine sending ``requests_each`` jobs one after another on the
    same scan; bounded by ``budget_s``. Returns errors, per-client completion times and queue waits."""
    from TextSegLib.remote import RemoteEngine

    deadline = time.monotonic() + budget_s
    done: dict[int, float] = {}
    waits: list[float] = []
    errors: list[str] = []
    sent: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        engine = RemoteEngine(url, api_key, client_name=f"load-{i}", poll_interval=0.1)
        start.wait()
        t0 = time.perf_counter()
        for _ in range(requests_each):
            if time.monotonic() > deadline:
                with lock:
                    errors.append(f"client {i}: time budget spent")
                return
            try:
                res = engine.segment(volume, list(prompts))
            except Exception as exc:  # counted, not raised: the figure is the error count
                with lock:
                    errors.append(f"client {i}: {exc}")
                continue
            with lock:
                waits.append(float(res.info.get("queued_s", 0.0)))
                sent.append(int(res.info.get("upload_bytes", 0)))
        with lock:
            done[i] = time.perf_counter() - t0

    t = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(budget_s + 30)
    wall = time.perf_counter() - t
    times = list(done.values())
    mean = statistics.fmean(times) if times else float("nan")
    q = sorted(waits)
    return {"clients": clients, "requests": clients * requests_each, "completed": len(waits), "errors": errors,
            "wall_s": wall, "client_s": times, "client_mean_s": mean,
            "client_min_s": min(times) if times else float("nan"), "client_max_s": max(times) if times else float("nan"),
            "queue_wait_p50_s": q[len(q) // 2] if q else float("nan"),
            "queue_wait_p95_s": q[min(len(q) - 1, int(0.95 * len(q)))] if q else float("nan"),
            "queue_wait_max_s": q[-1] if q else float("nan"), "sent_bytes": sent}
