"""Connection limits of ``textseg serve``: read timeouts, connection caps, TCP_NODELAY, descriptor limit.

uvicorn's HTTP protocol is wrapped (whichever parser it picked) so that every accepted
connection is admitted by one :class:`ConnectionGuard`:

* at most ``per_address`` connections per client address and ``max_connections`` in all;
  at the total cap the connection that has waited longest for a complete request head is
  dropped to make room (a slow client never locks out a fast one), else the new one gets a
  short ``503 too_many_connections``;
* a request head must arrive within ``header_timeout_s`` of its first byte (or of the
  connection opening), and a body may pause at most ``body_timeout_s`` between bytes;
* idle kept-alive connections close after ``keep_alive_s`` (uvicorn's own timer);
* TCP_NODELAY on every accepted socket: without it a kept-alive request waits ~40 ms for
  Nagle's algorithm meeting the client's delayed ACK (asyncio skips it for a socket made
  with protocol 0).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("textseg.server")

#: descriptors kept free for the listening socket, logs, model files and worker threads
FD_RESERVE = 128


@dataclass
class ConnectionLimits:
    """The connection limits (see the module doc); ``max_connections=None``: from the descriptor limit."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_connections: int | None = None
    per_address: int = 64

    def total(self) -> int:
        if self.max_connections is not None:
            return int(self.max_connections)
        return max(32, min(4096, fd_soft_limit() - FD_RESERVE))

    def info(self) -> dict[str, Any]:
        return {"header_timeout_s": self.header_timeout_s, "body_timeout_s": self.body_timeout_s,
                "keep_alive_s": self.keep_alive_s, "max_connections": self.total(),
                "connections_per_address": self.per_address}


def fd_soft_limit() -> int:
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit of this kind
        return 8192
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def raise_fd_limit(want: int = 65536) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (never above the hard limit); (soft, hard) after."""
    try:
        import resource
    except ImportError:
        return (fd_soft_limit(), fd_soft_limit())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # a container may forbid it: keep the old limit
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, target, exc)
    return tuple(resource.getrlimit(resource.RLIMIT_NOFILE))  # type: ignore[return-value]


def set_nodelay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _State:
    __slots__ = ("address", "since", "seen", "last_data")

    def __init__(self, address: str, now: float) -> None:
        self.address = address
        self.since: float | None = now  # waiting for a request head since (None: head complete / idle)
        self.seen: Any = None  # the last request cycle whose head was complete
        self.last_data = now


def _refusal(message: str) -> bytes:
    body = json.dumps({"code": "too_many_connections", "error": message}).encode("utf-8")
    return (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class ConnectionGuard:
    """Admits, times and drops the connections of one server (event-loop thread only)."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self.conns: dict[Any, _State] = {}
        self.by_address: Counter[str] = Counter()
        self.stats = Counter()
        self._ticking = False

    # -- admission ------------------------------------------------------------------------
    def admit(self, proto: Any, transport: Any) -> bool:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "?"
        limits = self.limits
        if self.by_address[address] >= limits.per_address:
            self.stats["refused_address"] += 1
            self._refuse(transport, f"This address already has {limits.per_address} connections open, the "
                                    "server's limit per client address. Close idle ones and retry.")
            return False
        if len(self.conns) >= limits.total() and not self._evict_slowest():
            self.stats["refused_total"] += 1
            self._refuse(transport, f"The server has {len(self.conns)} connections open, its limit. Retry shortly.")
            return False
        now = time.monotonic()
        self.conns[proto] = _State(address, now)
        self.by_address[address] += 1
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_later(self._period(), self._tick)
        return True

    def release(self, proto: Any) -> bool:
        """Forget ``proto``; False when it was never admitted."""
        st = self.conns.pop(proto, None)
        if st is None:
            return False
        self.by_address[st.address] -= 1
        if self.by_address[st.address] <= 0:
            del self.by_address[st.address]
        return True

    def _refuse(self, transport: Any, message: str) -> None:
        try:
            transport.write(_refusal(message))
        finally:
            transport.close()

    def _evict_slowest(self) -> bool:
        waiting = [(st.since, p) for p, st in self.conns.items() if st.since is not None]
        if not waiting:
            return False
        _, proto = min(waiting, key=lambda x: x[0])
        self.stats["evicted_slow"] += 1
        self._drop(proto)
        return True

    def _drop(self, proto: Any) -> None:
        self.release(proto)
        transport = getattr(proto, "transport", None)
        if transport is not None:
            transport.abort()  # no lingering: the descriptor is free at once

    # -- timing ---------------------------------------------------------------------------
    def on_data(self, proto: Any) -> None:
        st = self.conns.get(proto)
        if st is None:
            return
        now = time.monotonic()
        st.last_data = now
        self._observe(proto, st)
        cycle = getattr(proto, "cycle", None)
        if st.since is None and (cycle is None or cycle.response_complete):
            st.since = now  # the first byte of the next request head

    @staticmethod
    def _observe(proto: Any, st: _State) -> None:
        cycle = getattr(proto, "cycle", None)
        if cycle is not None and cycle is not st.seen:  # the parser made a new request: its head is complete
            st.seen, st.since = cycle, None

    def _period(self) -> float:
        return max(0.05, min(1.0, self.limits.header_timeout_s / 4, self.limits.body_timeout_s / 4))

    def _tick(self) -> None:
        now = time.monotonic()
        limits = self.limits
        for proto, st in list(self.conns.items()):
            self._observe(proto, st)
            if st.since is not None and now - st.since > limits.header_timeout_s:
                self.stats["header_timeouts"] += 1
                self._drop(proto)
                continue
            cycle = st.seen
            flow = getattr(proto, "flow", None)
            if (cycle is not None and cycle is getattr(proto, "cycle", None) and cycle.more_body
                    and not cycle.response_complete and now - st.last_data > limits.body_timeout_s
                    and not (flow is not None and flow.read_paused)):
                self.stats["body_timeouts"] += 1
                self._drop(proto)
        if self.conns:
            asyncio.get_running_loop().call_later(self._period(), self._tick)
        else:
            self._ticking = False

    def info(self) -> dict[str, Any]:
        return {"open": len(self.conns), "addresses": len(self.by_address), **dict(self.stats)}


def guarded_protocol(base: type, guard: ConnectionGuard) -> type:
    """A subclass of uvicorn's HTTP protocol class ``base`` whose connections ``guard`` admits."""

    class Guarded(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport):  # type: ignore[override]
            set_nodelay(transport)
            self._textseg_admitted = guard.admit(self, transport)
            if self._textseg_admitted:
                super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if not getattr(self, "_textseg_admitted", False):
                return
            guard.on_data(self)
            super().data_received(data)

        def connection_lost(self, exc):  # type: ignore[override]
            guard.release(self)
            if getattr(self, "_textseg_admitted", False):
                super().connection_lost(exc)

        def eof_received(self):  # type: ignore[override]
            if getattr(self, "_textseg_admitted", False):
                return super().eof_received()
            return None

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def uvicorn_config(app: Any, limits: ConnectionLimits | None = None, **kw: Any):
    """A ``uvicorn.Config`` for ``app`` with the guard installed (``app.state.connections``)."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    limits = limits or getattr(app.state, "connection_limits", None) or ConnectionLimits()
    guard = ConnectionGuard(limits)
    app.state.connections = guard
    kw.setdefault("log_level", "warning")
    return uvicorn.Config(app, http=guarded_protocol(AutoHTTPProtocol, guard),
                          timeout_keep_alive=max(1, round(limits.keep_alive_s)), **kw)


__all__ = ["ConnectionLimits", "ConnectionGuard", "guarded_protocol", "raise_fd_limit", "set_nodelay",
           "uvicorn_config"]
