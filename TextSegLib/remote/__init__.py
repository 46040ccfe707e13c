"""Remote inference: a FastAPI server (``textseg serve``) and ``RemoteEngine``, its client.

Public API::

    RemoteEngine(url, api_key=None, timeout=60.0) -> Engine protocol
    test_connection(url, api_key) -> (ok, message)
    create_app(engine_factory, *, api_key=None, max_upload_mb=1024, max_voxels=..., result_ttl_s=600)

``create_app`` needs FastAPI and is imported on first use.
"""
from __future__ import annotations

from .client import RemoteEngine, test_connection

__all__ = ["RemoteEngine", "test_connection", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .server import create_app

        return create_app
    raise AttributeError(name)
