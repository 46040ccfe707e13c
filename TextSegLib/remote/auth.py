"""API keys: constant-time bearer-token check and the loopback-only rule for serving without one."""
from __future__ import annotations

import hmac
import ipaddress
import os
import socket

from ..errors import RemoteError

ENV_KEY = "TEXTSEG_API_KEY"


def bearer_ok(authorization: str | None, api_key: str | None) -> bool:
    """True when no key is configured, or the ``Authorization: Bearer`` value matches it."""
    if not api_key:
        return True
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), api_key.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (name or address) only accepts connections from this machine."""
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(h, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to expose the server beyond this machine without an API key."""
    if not api_key and not is_loopback(host):
        raise RemoteError(
            f"Refusing to serve on {host!r} without an API key: anyone on the network could upload scans.",
            f"Pass --api-key KEY (or set {ENV_KEY}), or bind to 127.0.0.1.",
        )
    if api_key is not None and len(api_key.strip()) < 8:
        raise RemoteError("The API key is shorter than 8 characters.",
                          "Use a long random key, e.g. python -c \"import secrets; print(secrets.token_urlsafe(24))\".")


def key_from_env(api_key: str | None) -> str | None:
    """The key from the option or the environment, stripped; blank means none (the caller refuses a short one)."""
    key = api_key if api_key is not None else os.environ.get(ENV_KEY)
    if key is None:
        return None
    return key.strip() if key.strip() else (key if key else None)
