"""Remote inference: a FastAPI server (``textseg serve``) and ``RemoteEngine``, its client.

Public API::

    RemoteEngine(url, api_key=None, timeout=60.0) -> Engine protocol
    test_connection(url, api_key) -> (ok, message)
    create_app(engine_factory, *, api_key=None, max_upload_mb=1024, max_voxels=..., result_ttl_s=600,
               devices=None, max_queued=64, per_client=None, result_budget_mb=512, image_cache_mb=2048)

``create_app`` needs FastAPI and is imported on first use. Modules: ``protocol`` (wire format,
codecs, image ids), ``codes`` (stable error codes), ``queue`` (fair job queue, workers per
device, result store), ``images`` (upload-once LRU), ``server`` (the app), ``client``
(``RemoteEngine``), ``auth``, ``ray_serve`` (the same app behind Ray Serve).
"""
from __future__ import annotations

from .client import RemoteEngine, test_connection

__all__ = ["RemoteEngine", "test_connection", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .server import create_app

        return create_app
    raise AttributeError(name)
