"""The same TextSeg server behind Ray Serve: engine replicas on several GPUs (or machines), one address.

Layout (one Ray Serve application)::

    HTTP 127.0.0.1:PORT -> "TextSegFront" (1 replica): the very app of ``create_app`` (auth, queue,
                           images, results, event stream) with one queue worker per engine replica
                        -> "TextSegEngine" (N replicas, one job each at a time): ``engine.segment``

Clients see the API of ``textseg serve`` unchanged (same ``RemoteEngine``, same key). Prompts are
resolved at the front; replicas get the engine's own terms and the raw volume through Ray's object
store (cluster-internal; nothing from the network is unpickled). Progress inside a replica is not
streamed (stage ``remote``); cancelling a running job drops its answer.

    from TextSegLib.remote.ray_serve import run
    run(model="textseg-mini", replicas=2, port=8000, api_key=KEY, gpus_per_replica=1)
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

from ..engine.base import CancelToken, EngineResult, ProgressCallback
from ..errors import CancelledError, ModelError
from ..volume import MODALITIES, Volume
from . import protocol

APP_NAME = "textseg"
ENGINE_DEPLOYMENT = "TextSegEngine"


class EngineReplica:
    """One Ray Serve replica holding one engine (built from a catalog model or a factory)."""

    def __init__(self, model: str | None = None, model_path: str | None = None, device: str = "auto",
                 factory: Callable[[], Any] | None = None) -> None:
        if factory is not None:
            self.engine = factory()
        else:
            from ..models.catalog import load_engine

            self.engine = load_engine(model, model_path, device=device)

    def describe(self) -> dict[str, Any]:
        e = self.engine
        return {"name": e.name, "device": str(getattr(e, "device", "?")), "free_text": bool(getattr(e, "free_text", True)),
                "modalities": list(getattr(e, "modalities", None) or []),
                "vocabulary": {m: list(e.vocabulary(m)) for m in MODALITIES}}

    def segment(self, geometry: dict, raw: bytes, terms: list[str], modality: str | None,
                roi_ras: Any) -> EngineResult:
        volume = protocol.volume_from_raw(geometry, raw, modality or "", "ray job")
        res = self.engine.segment(volume, terms, modality=modality, roi_ras=roi_ras)
        res.info = {**res.info, "replica_pid": os.getpid()}
        return res


class RayEngine:
    """The Engine protocol over a Ray Serve deployment handle (used by the front's queue workers)."""

    def __init__(self, handle: Any, label: str) -> None:
        self.handle = handle
        self.label = label
        self._desc: dict[str, Any] | None = None

    def _describe(self) -> dict[str, Any]:
        if self._desc is None:
            self._desc = self.handle.describe.remote().result()
        return self._desc

    @property
    def name(self) -> str:
        return str(self._describe()["name"])

    @property
    def device(self) -> str:
        return f"ray:{self._describe()['device']}"

    @property
    def free_text(self) -> bool:
        return bool(self._describe()["free_text"])

    @property
    def modalities(self) -> tuple[str, ...] | None:
        return tuple(self._describe()["modalities"]) or None

    def vocabulary(self, modality: str) -> list[str]:
        return list(self._describe()["vocabulary"].get(modality, []))

    def segment(self, volume: Volume, prompts: Sequence, *, modality: str | None = None, roi_ras=None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> EngineResult:
        texts = [getattr(p, "text", p) for p in prompts]
        terms = [getattr(p, "term", p) for p in prompts]
        name, raw = protocol.wire_array(volume)
        geo = protocol.geometry_header(volume.shape, name, volume.ijk_to_ras)
        if progress:
            progress("remote", 0, 1)
        t = time.perf_counter()
        response = self.handle.segment.remote(geo, raw, terms, modality, roi_ras)
        while True:
            try:
                res: EngineResult = response.result(timeout_s=0.2)
                break
            except TimeoutError:
                if cancel is not None and cancel.cancelled:
                    response.cancel()
                    raise CancelledError("Segmentation cancelled.") from None
        out = EngineResult(masks={}, probabilities={}, timings={**res.timings, "ray": time.perf_counter() - t},
                           info=res.info)
        for text, term, p in zip(texts, terms, prompts):
            out.masks[text] = res.masks[term]
            if term in res.probabilities:
                out.probabilities[text] = res.probabilities[term]
            out.found[text] = res.is_found(term)
            out.reasons[text] = res.reasons.get(term, "")
            if res.state(term) == "uncertain":
                out.uncertain.add(text)
            if term in res.presence:
                out.presence[text] = float(res.presence[term])
            if not isinstance(p, str):
                out.prompts[text] = p
        if progress:
            progress("remote", 1, 1)
        return out


def _front_app(replicas: int, app_options: dict[str, Any]):
    """Builder evaluated on the front replica: ``create_app`` with one worker per engine replica."""
    from ray import serve

    from .server import create_app

    handle = serve.get_deployment_handle(ENGINE_DEPLOYMENT, app_name=APP_NAME)
    labels = [f"replica-{i}" for i in range(replicas)]
    return create_app(lambda label: RayEngine(handle, label), devices=labels, **app_options)


def application(*, replicas: int = 2, model: str | None = None, model_path: str | None = None,
                device: str = "auto", factory: Callable[[], Any] | None = None, gpus_per_replica: float = 0,
                cpus_per_replica: float = 1, **app_options: Any):
    """The bound Ray Serve application (front + ``replicas`` engine replicas)."""
    try:
        from ray import serve
    except ImportError as exc:
        raise ModelError(f"Ray Serve is not installed ({exc}).", "pip install 'ray[serve]'.") from None

    engine = serve.deployment(EngineReplica, name=ENGINE_DEPLOYMENT, num_replicas=replicas, max_ongoing_requests=1,
                              ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica})

    class TextSegFront:
        def __init__(self, engine_handle: Any) -> None:
            self.engine_handle = engine_handle  # binds the engine deployment into this application

    def build_front():  # a zero-argument builder: Ray Serve evaluates it on the front replica
        return _front_app(replicas, app_options)

    front = serve.deployment(serve.ingress(build_front)(TextSegFront),
                             name="TextSegFront", num_replicas=1, ray_actor_options={"num_cpus": 0})
    return front.bind(engine.bind(model, model_path, device, factory))


def run(*, host: str = "127.0.0.1", port: int = 8000, blocking: bool = False, **kwargs: Any) -> str:
    """Start Ray Serve on ``host:port`` (connecting to a running Ray cluster, or starting a local one)
    and deploy :func:`application`; returns the base URL."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(**kwargs), name=APP_NAME, route_prefix="/", blocking=blocking)
    return f"http://{host}:{port}"
