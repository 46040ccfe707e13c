"""``textseg serve`` options for the memory budget and connection limits: a real ``textseg serve``
process (bundled textseg-mini) applies them; a bad value is one line before anything starts."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from _remote_helpers import free_port
from TextSegLib.cli.main import main

GOOD = ["--memory-budget", "64M", "--max-decoded", "16M", "--streams-per-client", "2", "--max-connections", "40",
        "--connections-per-address", "8", "--header-timeout-s", "1", "--body-timeout-s", "2", "--keep-alive-s", "3"]


@pytest.mark.parametrize("args, expect", [
    (["--memory-budget", "8Q"], "--memory-budget '8Q' is not a size. Give a number with K, M or G"),
    (["--memory-budget", "0.5K"], "--memory-budget '0.5K' is below 1 MB."),
    (["--memory-budget", "1G", "--max-decoded", "2G"], "--max-decoded 2G is larger than the memory budget"),
    (["--streams-per-client", "0"], "--streams-per-client '0' is out of range. Give a whole number at least 1."),
    (["--max-connections", "many"], "--max-connections 'many' is not a whole number."),
    (["--header-timeout-s", "nan"], "--header-timeout-s 'nan' is out of range."),
    (["--keep-alive-s", "-1"], "--keep-alive-s '-1' is out of range."),
    (["--max-connections", "10", "--connections-per-address", "20"], "is more than --max-connections 10."),
])
def test_bad_limit_is_one_line(args, expect, capsys):
    code = main(["serve", "--port", str(free_port()), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expect in err, err
    assert err.startswith("textseg: error: ") and "Traceback" not in err


def test_memory_size_units():
    from TextSegLib.cli.serve_limits import parse_size_mb

    assert parse_size_mb("--x", "8G") == 8192 and parse_size_mb("--x", "512m") == 512
    assert parse_size_mb("--x", "4096") == 4096 and parse_size_mb("--x", "1.5GB") == 1536
    assert parse_size_mb("--x", "2048K") == 2


def _get(port: int, path: str) -> tuple[int, dict]:
    import httpx

    r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return r.status_code, r.json()


def test_serve_applies_the_limits(tmp_path):
    """The real ``textseg serve`` shows the limits in /v1/info and enforces the header timeout."""
    port = free_port()
    env = {**os.environ, "TEXTSEG_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("TEXTSEG_MODEL", None)
    proc = subprocess.Popen([sys.executable, "-m", "TextSegLib.cli.main", "serve", "--port", str(port), "--model",
                             "textseg-mini", "--device", "cpu", *GOOD], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"textseg serve ended: {proc.stderr.read()[-2000:]}")
            try:
                if _get(port, "/v1/health")[0] == 200:
                    break
            except Exception:  # not listening yet
                time.sleep(0.3)
        code, info = _get(port, "/v1/info")
        limits = info["limits"]
        assert code == 200 and limits["memory_budget_mb"] == 64 and limits["max_decoded_mb"] == 16
        assert limits["streams_per_client"] == 2 and limits["max_connections"] == 40
        assert limits["connections_per_address"] == 8 and limits["header_timeout_s"] == 1
        assert limits["body_timeout_s"] == 2 and limits["keep_alive_s"] == 3
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # a request head that never ends
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
            closed_after = time.monotonic() - t0
        assert closed_after < 4, closed_after  # 1 s header timeout (10 s by default)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
