"""HTTP/1.1 requests advanced in bounded, non-blocking steps (for a GUI timer that must never block).

A :class:`Request` does nothing in its constructor; each :meth:`Request.step` call does at
most ``budget_s`` seconds of work (connect, TLS handshake, send a part of the body, read a
part of the answer) on a non-blocking socket and returns whether the request is over.
Inside Slicer, PythonQt holds the GIL while Qt idles, so a Python thread would only run
while the main thread runs Python; a request stepped from the timer tick needs no thread.

* The body is ``bytes`` or a :class:`Body` whose ``read()`` makes the next part on demand
  (an upload can be encoded while it is sent, a slab per call).
* One request per connection (``Connection: close``); ``Content-Length`` and chunked
  answers are read into one buffer (preallocated when the length is known).
* A host name that is not an IP literal is resolved once in a daemon thread (the one call
  without a non-blocking form: ``getaddrinfo``, which releases the GIL); results are cached.
* Errors are one :class:`~TextSegLib.errors.RemoteError` line: "Could not reach URL: reason."
  with the same reasons as :class:`~.client.RemoteEngine`.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlencode, urlparse

from ..errors import RemoteError

_HINT = "Check the URL and that `textseg serve` is running."
CHUNK = 1 << 20  # bytes per send/recv call
_DNS: dict[tuple[str, int], tuple[float, Any]] = {}  # (host, port) -> (time, addrinfo tuple or OSError)
_DETACHED: list["Request"] = []  # requests whose answer nobody waits for (a cancel's DELETE)


class Body(Protocol):
    """A request body made on demand: ``length`` bytes in all, ``read()`` the next part (b"" at the end)."""

    length: int

    def read(self) -> bytes | memoryview: ...


class _Bytes:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data, self.length, self._done = data, len(data), False

    def read(self) -> bytes | memoryview:
        if self._done:
            return b""
        self._done = True
        return memoryview(self.data)


def _ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi  # what requests verifies with

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


def _resolve(host: str, port: int) -> Any:
    """(family, sockaddr), or None while the daemon thread still resolves; raises OSError."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (str(ip), port))
    except ValueError:
        pass
    key = (host, port)
    hit = _DNS.get(key)
    if hit is not None and hit[1] is not None and time.monotonic() - hit[0] < 300:
        if isinstance(hit[1], OSError):
            _DNS.pop(key, None)  # the next request asks again
            raise hit[1]
        return hit[1]
    if hit is None or (hit[1] is not None and time.monotonic() - hit[0] >= 300):
        _DNS[key] = (time.monotonic(), None)

        def work() -> None:
            try:
                info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
                _DNS[key] = (time.monotonic(), (info[0], info[4]))
            except OSError as exc:
                _DNS[key] = (time.monotonic(), exc)

        threading.Thread(target=work, name="TextSegResolve", daemon=True).start()
    return None


class Request:
    """One HTTP request stepped without blocking (see the module docstring)."""

    def __init__(self, base_url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
                 body: bytes | bytearray | memoryview | Body | None = None, params: dict | None = None,
                 timeout_s: float = 30.0, connect_timeout_s: float = 10.0) -> None:
        u = urlparse(base_url)
        self.url = base_url.rstrip("/")
        self.https = u.scheme == "https"
        self.host = u.hostname or ""
        self.port = u.port or (443 if self.https else 80)
        self.method = method
        self.path = (u.path.rstrip("/") + path) + (("?" + urlencode(params)) if params else "")
        self.body: Body | None = body if body is None or hasattr(body, "read") else _Bytes(body)  # type: ignore[arg-type]
        self.headers = dict(headers or {})
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.state = "resolve"  # resolve, connect, handshake, send, recv, done
        self.sock: Any = None
        self.addr: Any = None
        self.error: RemoteError | None = None
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.content = bytearray()
        self.sent = 0
        self.received = 0  # body bytes of the answer so far
        self.expected: int | None = None  # the answer's Content-Length
        self._out: memoryview = memoryview(self._head())
        self._body_done = self.body is None
        self._raw = bytearray()  # bytes read before the header end, or a chunked body
        self._chunked = False
        self._started = time.monotonic()
        self._last = self._started

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def total(self) -> int:
        """Bytes of the request (head + body)."""
        return len(self._head()) + (self.body.length if self.body is not None else 0)

    def _head(self) -> bytes:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default = 443 if self.https else 80
        lines = [f"{self.method} {self.path or '/'} HTTP/1.1",
                 f"Host: {host}" + ("" if self.port == default else f":{self.port}"),
                 "Connection: close", "Accept-Encoding: identity"]
        if self.body is not None:
            lines.append(f"Content-Length: {self.body.length}")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- stepping -------------------------------------------------------------------------
    def step(self, budget_s: float = 0.01) -> bool:
        """Do at most about ``budget_s`` seconds of work; True when the request is over."""
        _drive_detached(self)
        if self.state == "done":
            return True
        end = time.perf_counter() + max(0.0, budget_s)
        try:
            while self.state != "done" and self._advance(end):
                pass
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._fail(self._reason(exc))
        if self.state != "done":
            limit = self.connect_timeout_s if self.state in ("resolve", "connect", "handshake") else self.timeout_s
            if time.monotonic() - self._last > limit:
                self._fail("the request timed out")
        return self.state == "done"

    def wait(self, timeout_s: float | None = None, budget_s: float = 0.05) -> "Request":
        """Step until over (scripts, tests and the blocking API)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.step(budget_s):
            if end is not None and time.monotonic() > end:
                self._fail("the request timed out")
        return self

    def _advance(self, end: float) -> bool:
        """One piece of work; False when the socket would block or the budget is spent."""
        if time.perf_counter() >= end and self.state not in ("resolve",):
            return False
        if self.state == "resolve":
            self.addr = _resolve(self.host, self.port)
            if self.addr is None:
                return False
            self.sock = socket.socket(self.addr[0], socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = self.sock.connect_ex(self.addr[1])
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                raise OSError(code, os.strerror(code))
            self.state = "connect"
            return True
        if self.state == "connect":
            if not self._wait_io(False, end):
                return False
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            self._touch()
            if self.https:
                self.sock = _ssl_context().wrap_socket(self.sock, server_hostname=self.host,
                                                       do_handshake_on_connect=False)
                self.state = "handshake"
            else:
                self.state = "send"
            return True
        if self.state == "handshake":
            try:
                self.sock.do_handshake()
            except ssl.SSLWantReadError:
                return self._wait_io(True, end)
            except ssl.SSLWantWriteError:
                return self._wait_io(False, end)
            self._touch()
            self.state = "send"
            return True
        if self.state == "send":
            return self._send(end)
        if self.state == "recv":
            return self._recv(end)
        return False

    def _wait_io(self, read: bool, end: float) -> bool:
        left = max(0.0, end - time.perf_counter())
        r, w, _ = select.select([self.sock] if read else [], [] if read else [self.sock], [], left)
        return bool(r or w)

    def _touch(self) -> None:
        self._last = time.monotonic()

    def _send(self, end: float) -> bool:
        if not len(self._out):
            part = self.body.read() if not self._body_done and self.body is not None else b""
            if not len(part):
                self._body_done = True
                self.state = "recv"
                return True
            self._out = memoryview(part).cast("B")
        try:
            n = self.sock.send(self._out[:CHUNK])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return self._wait_io(False, end)
        except (BrokenPipeError, ConnectionResetError):
            self.state = "recv"  # the server answered early (401, 413 ...) and closed: read its answer
            return True
        self._out = self._out[n:]
        self.sent += n
        self._touch()
        return True

    def _recv(self, end: float) -> bool:
        try:
            if self.expected is not None and not self._chunked:
                view = memoryview(self.content)[self.received:]
                n = self.sock.recv_into(view, min(len(view), CHUNK)) if len(view) else 0
                data = None
            else:
                data = self.sock.recv(CHUNK)
                n = len(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return self._wait_io(True, end)
        except ConnectionResetError:
            n, data = 0, b""
        self._touch()
        if data is None:
            self.received += n
            if self.received >= (self.expected or 0):
                self._finish()
            elif n == 0:
                raise ConnectionResetError("connection lost")
            return True
        if n == 0:  # end of stream
            if not self.status:
                raise ConnectionResetError("connection lost")
            if self._chunked or (self.expected is not None and self.received < self.expected):
                raise ConnectionResetError("connection lost")
            self._finish()
            return True
        self._raw += data
        if not self.status:
            self._parse_head()
        elif self._chunked:
            self._parse_chunks()
        else:
            self.content += self._raw
            self.received += len(self._raw)
            self._raw = bytearray()
        return True

    def _parse_head(self) -> None:
        at = self._raw.find(b"\r\n\r\n")
        if at < 0:
            if len(self._raw) > 1 << 16:
                raise ValueError("answer header too long")
            return
        lines = bytes(self._raw[:at]).decode("latin-1").split("\r\n")
        rest = self._raw[at + 4:]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError("not an HTTP answer")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:  # 100 Continue: the real answer follows
            self._raw = bytearray(rest)
            if rest:
                self._parse_head()
            return
        self.status, self.response_headers, self._raw = status, headers, bytearray()
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if self.method == "HEAD" or status in (204, 304):
            self._finish()
            return
        if length is not None and length.isdigit() and not self._chunked:
            self.expected = int(length)
            self.content = bytearray(self.expected)
            take = min(len(rest), self.expected)
            self.content[:take] = rest[:take]
            self.received = take
            if self.received >= self.expected:
                self._finish()
        else:
            self._raw = bytearray(rest)
            if self._chunked:
                self._parse_chunks()
            else:
                self.content += self._raw
                self.received += len(self._raw)
                self._raw = bytearray()

    def _parse_chunks(self) -> None:
        while True:
            at = self._raw.find(b"\r\n")
            if at < 0:
                return
            size = int(bytes(self._raw[:at]).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self._finish()
                return
            if len(self._raw) < at + 2 + size + 2:
                return
            self.content += self._raw[at + 2:at + 2 + size]
            self.received += size
            del self._raw[:at + 2 + size + 2]

    def _finish(self) -> None:
        self.state = "done"
        self.close()

    def _reason(self, exc: BaseException) -> str:
        text = str(exc).lower()
        if isinstance(exc, ssl.SSLError):
            return "TLS/SSL error (certificate?)"
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or "lost" in text:
            return "connection lost"
        if isinstance(exc, socket.gaierror):
            return "unknown host name"
        if isinstance(exc, ValueError):
            return "not an HTTP answer"
        return type(exc).__name__

    def _fail(self, reason: str) -> None:
        err = RemoteError(f"Could not reach {self.url}: {reason}.", _HINT)
        err.reason = reason  # type: ignore[attr-defined]
        self.error = err
        self.state = "done"
        self.close()

    def close(self) -> None:
        """Drop the connection (a cancel); the request is then over."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        if self.state != "done":
            self.state = "done"
            if self.error is None and not self.status:
                self.error = RemoteError(f"Request to {self.url} was abandoned.")

    def detach(self, max_s: float = 10.0) -> None:
        """Nobody waits for the answer: later requests step this one until it is over (or ``max_s``)."""
        if not self.done:
            self._detach_end = time.monotonic() + max_s
            _DETACHED.append(self)


_driving = False


def _drive_detached(caller: Request) -> None:
    global _driving
    if _driving or not _DETACHED:
        return
    _driving = True
    try:
        for r in list(_DETACHED):
            if r is caller:
                continue
            if r.done or time.monotonic() > getattr(r, "_detach_end", 0.0):
                r.close()
                _DETACHED.remove(r)
            else:
                r.step(0.002)
    finally:
        _driving = False


__all__ = ["Request", "Body", "CHUNK"]
