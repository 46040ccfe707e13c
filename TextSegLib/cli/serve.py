"""``textseg serve``: run the remote inference server (for the Slicer module's "Remote server")."""
from __future__ import annotations

import click

from ..errors import ModelError
from ..remote.auth import ENV_KEY, check_bind, key_from_env


def build_app(host: str, model: str | None, model_path: str | None, device: str, api_key: str | None,
              max_upload_mb: float, max_voxels: int | None):
    """Check the bind rule, load the model once, return (app, engine)."""
    key = key_from_env(api_key)
    check_bind(host, key)
    try:
        from ..remote.server import create_app
    except ImportError as exc:
        raise ModelError(f"The server needs FastAPI and uvicorn ({exc}).", "pip install 'textseg[server]'.") from None
    from ..models.catalog import load_engine

    engine = load_engine(model, model_path, device=device)
    kwargs = {"max_voxels": max_voxels} if max_voxels else {}
    return create_app(lambda: engine, api_key=key, max_upload_mb=max_upload_mb, **kwargs), engine


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs an API key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--model", "model_name", help="Catalog or registered model (default: see `textseg models list`).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="A model folder to use directly.")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:N, mps or cpu.")
@click.option("--api-key", help=f"Key clients must send as 'Authorization: Bearer KEY' (or set {ENV_KEY}).")
@click.option("--max-upload-mb", default=1024.0, show_default=True, type=click.FloatRange(min=0.001))
@click.option("--max-voxels", type=click.IntRange(min=1), help="Largest accepted volume (voxels).")
def command(host: str, port: int, model_name: str | None, model_path: str | None, device: str, api_key: str | None,
            max_upload_mb: float, max_voxels: int | None) -> None:
    """Serve a model over HTTP for RemoteEngine / the Slicer module."""
    import uvicorn

    app, engine = build_app(host, model_name, model_path, device, api_key, max_upload_mb, max_voxels)
    click.echo(f"TextSeg server: model {engine.name} on {getattr(engine, 'device', '?')}, "
               f"listening on http://{host}:{port} ({'API key required' if key_from_env(api_key) else 'no API key, loopback only'})",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
