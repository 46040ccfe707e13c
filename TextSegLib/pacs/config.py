"""Where the DICOMweb server and its credentials come from.

Order (first wins, per field): explicit arguments, environment variables,
the config file. Environment: ``TEXTSEG_DICOMWEB_URL``,
``TEXTSEG_DICOMWEB_TOKEN`` (sent as ``Authorization: Bearer``),
``TEXTSEG_DICOMWEB_USER`` (``user:password``, HTTP Basic, as Orthanc uses).
Config file: ``$TEXTSEG_DICOMWEB_CONFIG`` or ``$TEXTSEG_HOME/dicomweb.json``
(default ``~/.textseg/dicomweb.json``)::

    {"url": "https://pacs.example.org/dicom-web", "token": "...", "user": "name:password",
     "cache": "/data/textseg-cache", "timeout": 60}

Secrets never appear in ``repr``, messages or logs.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import RemoteError


class PacsError(RemoteError):
    """A DICOMweb server refused or failed a request, or is not configured."""


def _home() -> Path:
    return Path(os.environ.get("TEXTSEG_HOME") or Path.home() / ".textseg").expanduser()


def config_path() -> Path:
    env = os.environ.get("TEXTSEG_DICOMWEB_CONFIG")
    return Path(env).expanduser() if env else _home() / "dicomweb.json"


@dataclass(frozen=True)
class PacsSettings:
    """A DICOMweb endpoint; ``token`` and ``password`` are hidden from ``repr``."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 60.0
    cache: str | None = None

    def __repr__(self) -> str:
        auth = "bearer token" if self.token else (f"user {self.username!r}" if self.username else "no credentials")
        return f"PacsSettings(url={self.url!r}, {auth})"

    __str__ = __repr__

    def cache_dir(self) -> Path:
        return Path(self.cache).expanduser() if self.cache else _home() / "dicomweb-cache"


def _read_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PacsError(f"{path}: cannot be read as JSON ({exc}).", "Fix or delete the DICOMweb config file.") from None
    if not isinstance(data, dict):
        raise PacsError(f"{path}: must hold one JSON object with 'url' (and 'token' or 'user').")
    if (data.get("token") or data.get("user") or data.get("password")) and os.name == "posix":
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            raise PacsError(f"{path}: holds a secret but other users can read it.", f"Run: chmod 600 {path}")
    return data


def resolve_settings(url: str | None = None, token: str | None = None, user: str | None = None,
                     config: str | os.PathLike | None = None, timeout: float | None = None,
                     cache: str | None = None) -> PacsSettings:
    """Build :class:`PacsSettings` from arguments, environment and config file."""
    file = _read_file(Path(config).expanduser() if config else config_path())
    if config and not Path(config).expanduser().is_file():
        raise PacsError(f"{config}: no such DICOMweb config file.", "Check the path.")
    url = url or os.environ.get("TEXTSEG_DICOMWEB_URL") or file.get("url")
    if not url:
        raise PacsError("no DICOMweb server is configured.",
                        f"Pass --dicomweb URL, set TEXTSEG_DICOMWEB_URL, or write {{\"url\": ...}} to {config_path()}.")
    token = token or os.environ.get("TEXTSEG_DICOMWEB_TOKEN") or file.get("token") or None
    user = user or os.environ.get("TEXTSEG_DICOMWEB_USER") or file.get("user") or None
    password = file.get("password") if user and ":" not in user else None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"DICOMweb URL {parts._replace(netloc=parts.hostname or '').geturl()!r} is not an http(s) URL.",
                        "Write it like https://pacs.example.org/dicom-web.")
    if parts.username:  # credentials inside the URL: move them out so that they never get printed
        user = user or f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=netloc))
    username = None
    if user:
        username, _, pw = user.partition(":")
        password = pw or password or ""
        if not password:  # never send a Basic header with an empty password by accident
            raise PacsError(f"user {username!r} has no password.",
                            "Give it as user:password in TEXTSEG_DICOMWEB_USER (or --user), or as \"password\" "
                            f"in {config_path()}.")
    return PacsSettings(url=url.rstrip("/"), token=token, username=username, password=password,
                        timeout=float(timeout or file.get("timeout") or 60.0), cache=cache or file.get("cache"))
