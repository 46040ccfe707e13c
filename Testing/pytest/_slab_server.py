"""A real uvicorn TextSeg server with the slab engine, as its own process (kill/restart tests).

Usage: python _slab_server.py PORT SLAB_WAIT_S
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402

from _remote_helpers import SlabEngine  # noqa: E402
from TextSegLib.remote.server import create_app  # noqa: E402

if __name__ == "__main__":
    port, wait = int(sys.argv[1]), float(sys.argv[2])
    engine = SlabEngine(gate=threading.Event(), slab_wait=wait)
    uvicorn.run(create_app(lambda: engine), host="127.0.0.1", port=port, log_level="warning")
