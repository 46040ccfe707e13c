"""``textseg serve``: run the remote inference server (for the Slicer module's "Remote server")."""
from __future__ import annotations

import errno
import os
import socket
import time

import click

from ..errors import ModelError, RemoteError
from ..remote.auth import ENV_KEY, check_bind, key_from_env
from .serve_limits import limit_options, server_limits


def parse_devices(device: str) -> list[str]:
    """``"cuda:0,cuda:1"`` -> one worker per device; a single value is one worker."""
    devices = [d.strip() for d in (device or "auto").split(",") if d.strip()]
    return devices or ["auto"]


def build_app(host: str, model: str | None, model_path: str | None, device: str, api_key: str | None,
              max_upload_mb: float, max_voxels: int | None, **queue_options):
    """Check the bind rule, load the model once per device, return (app, first engine)."""
    key = key_from_env(api_key)
    check_bind(host, key)
    try:
        from ..remote.server import create_app
    except ImportError as exc:
        raise ModelError(f"The server needs FastAPI and uvicorn ({exc}).", "pip install 'textseg[server]'.") from None
    from ..models.catalog import load_engine

    devices = parse_devices(device)
    engines = {d: load_engine(model, model_path, device=d) for d in devices}  # fail before listening
    kwargs = {"max_voxels": max_voxels} if max_voxels else {}
    kwargs.update({k: v for k, v in queue_options.items() if v is not None})
    if len(devices) > 1:
        kwargs["devices"] = devices
        app = create_app(lambda d: engines[d], api_key=key, max_upload_mb=max_upload_mb, **kwargs)
    else:
        only = engines[devices[0]]
        app = create_app(lambda: only, api_key=key, max_upload_mb=max_upload_mb, **kwargs)
    return app, engines[devices[0]]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a busy or forbidden port is one clear line."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # protocol 0 would skip asyncio's TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RemoteError(f"Port {port} on {host} is already in use (another server is listening there).",
                              "Stop it, or pick another port with --port N.") from None
        if exc.errno == errno.EACCES:
            raise RemoteError(f"Not allowed to listen on port {port} on {host}.",
                              "Use a port above 1023, e.g. --port 8000.") from None
        raise RemoteError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                          "Check --host and --port.") from None
    sock.listen(128)
    return sock


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs an API key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--model", "model_name", help="Catalog or registered model (default: see `textseg models list`).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="A model folder to use directly.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cuda, cuda:N, mps or cpu; a comma list (cuda:0,cuda:1) runs one worker per device.")
@click.option("--api-key", help=f"Key clients must send as 'Authorization: Bearer KEY' (or set {ENV_KEY}).")
@click.option("--max-upload-mb", default=1024.0, show_default=True, type=click.FloatRange(min=0.001))
@click.option("--max-voxels", type=click.IntRange(min=1), help="Largest accepted volume (voxels).")
@click.option("--max-queued", default=64, show_default=True, type=click.IntRange(min=1),
              help="Jobs that may wait; beyond that clients get 503 with Retry-After.")
@click.option("--per-client", type=click.IntRange(min=1), help="Most jobs one client may have queued or running.")
@click.option("--result-budget-mb", default=512.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Memory for finished, unfetched results (oldest dropped first).")
@click.option("--result-ttl-s", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds a finished result is kept.")
@click.option("--image-cache-mb", default=2048.0, show_default=True, type=click.FloatRange(min=1),
              help="Memory for uploaded scans (compressed, least recently used dropped first).")
@click.option("--ray-replicas", type=click.IntRange(min=1),
              help="Serve through Ray Serve with N engine replicas (a running cluster via RAY_ADDRESS, else local).")
@click.option("--ray-gpus-per-replica", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--parent-pid", type=click.IntRange(min=1),
              help="Stop when the process with this PID ends (the Slicer module passes Slicer's own).")
@limit_options
def command(host: str, port: int, model_name: str | None, model_path: str | None, device: str, api_key: str | None,
            max_upload_mb: float, max_voxels: int | None, max_queued: int, per_client: int | None,
            result_budget_mb: float, result_ttl_s: float, image_cache_mb: float, ray_replicas: int | None,
            ray_gpus_per_replica: float, parent_pid: int | None, **limit_texts: str | None) -> None:
    """Serve a model over HTTP for RemoteEngine / the Slicer module."""
    import uvicorn

    limits = server_limits(**limit_texts)  # a bad value is one line, before anything starts
    key = key_from_env(api_key)
    check_bind(host, key)
    running: dict = {}  # the uvicorn server, once it exists (the parent watch stops it)
    if parent_pid:
        watch_parent(parent_pid, running)
    sock = bind_socket(host, port)  # a busy port is reported before the model loads
    if ray_replicas:
        sock.close()
        from ..remote import ray_serve

        options = {"max_upload_mb": max_upload_mb, "max_queued": max_queued, "per_client": per_client,
                   "result_budget_mb": result_budget_mb, "result_ttl_s": result_ttl_s,
                   "image_cache_mb": image_cache_mb, "api_key": key, **({"max_voxels": max_voxels} if max_voxels else {}),
                   **limits}
        click.echo(f"TextSeg server (Ray Serve, {ray_replicas} replica(s)) listening on http://{host}:{port}", err=True)
        ray_serve.run(host=host, port=port, blocking=True, replicas=ray_replicas, model=model_name,
                      model_path=model_path, device=device, gpus_per_replica=ray_gpus_per_replica, **options)
        return
    try:
        app, engine = build_app(host, model_name, model_path, device, api_key, max_upload_mb, max_voxels,
                                max_queued=max_queued, per_client=per_client, result_budget_mb=result_budget_mb,
                                result_ttl_s=result_ttl_s, image_cache_mb=image_cache_mb, **limits)
        devices = parse_devices(device)
        where = ", ".join(devices) if len(devices) > 1 else str(getattr(engine, "device", "?"))
        click.echo(f"TextSeg server: model {engine.name} on {where}, listening on http://{host}:{port} "
                   f"({'API key required' if key_from_env(api_key) else 'no API key, loopback only'})", err=True)
        from ..remote.connections import raise_fd_limit, uvicorn_config

        raise_fd_limit()  # the soft descriptor limit up to the hard one, so 1,024 slow sockets cannot exhaust it
        running["server"] = uvicorn.Server(uvicorn_config(app))
        running["server"].run(sockets=[sock])
    finally:
        sock.close()


def watch_parent(pid: int, running: dict, grace_s: float = 5.0) -> None:
    """When process ``pid`` ends, stop the server (``running["server"]``) or, before it serves, exit."""
    from .parent_watch import watch

    def gone() -> None:
        click.echo(f"TextSeg server: the parent process {pid} has ended; stopping.", err=True)
        server = running.get("server")
        if server is not None:
            server.should_exit = True  # uvicorn's own graceful shutdown
            time.sleep(grace_s)
        os._exit(0)  # still loading the model, or the shutdown hangs: nothing here needs saving

    watch(pid, gone)
