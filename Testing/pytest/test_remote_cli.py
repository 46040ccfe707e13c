"""``textseg serve``: the loopback-only rule without a key (no real external bind)."""
from __future__ import annotations

import pytest

from TextSegLib.cli.main import main
from TextSegLib.errors import RemoteError
from TextSegLib.remote.auth import bearer_ok, check_bind, is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1"])
def test_non_loopback_without_key_is_refused(host, monkeypatch):
    monkeypatch.delenv("TEXTSEG_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="without an API key"):
        check_bind(host, None)
    check_bind(host, "a-long-enough-key")  # with a key it is allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_needs_no_key(host):
    assert is_loopback(host)
    check_bind(host, None)


def test_short_key_refused():
    with pytest.raises(RemoteError, match="shorter than 8"):
        check_bind("127.0.0.1", "abc")


def test_cli_refuses_before_loading_a_model(monkeypatch, capsys):
    monkeypatch.delenv("TEXTSEG_API_KEY", raising=False)
    import TextSegLib.models.catalog as catalog

    monkeypatch.setattr(catalog, "load_engine", lambda *a, **k: pytest.fail("model loaded before the bind check"))
    assert main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert "Refusing to serve on '0.0.0.0' without an API key" in err and "--api-key" in err


def test_env_key_allows_public_bind(monkeypatch):
    from TextSegLib.cli import serve

    monkeypatch.setenv("TEXTSEG_API_KEY", "env-key-123456789")
    monkeypatch.setattr("TextSegLib.models.catalog.load_engine", lambda *a, **k: _Dummy())
    app, engine = serve.build_app("0.0.0.0", None, None, "cpu", None, 1.0, None)
    assert engine.name == "dummy" and app.title == "TextSeg server"


class _Dummy:
    name = "dummy"


def test_bearer_compare():
    assert bearer_ok("Bearer k1234567", "k1234567") and bearer_ok("bearer  k1234567 ", "k1234567")
    assert not bearer_ok("Bearer k1234568", "k1234567") and not bearer_ok(None, "k1234567")
    assert not bearer_ok("Basic k1234567", "k1234567") and bearer_ok(None, None)


def test_segment_with_server_option(tmp_path):
    import numpy as np

    from _remote_helpers import KEY, SlabEngine, running_server, small_volume
    from TextSegLib.io import read_seg_nrrd, read_volume, write_volume

    src = tmp_path / "small.nrrd"
    write_volume(small_volume(), src)
    vol = read_volume(str(src), modality="ct")
    out = tmp_path / "out.seg.nrrd"
    engine = SlabEngine()
    with running_server(lambda: engine, api_key=KEY) as url:
        code = main(["segment", str(src), "-p", "bright", "-o", str(out), "--modality", "ct", "--quiet",
                     "--server", url, "--api-key", KEY])
    assert code == 0 and engine.slabs_run == vol.shape[2]
    seg = read_seg_nrrd(out)
    (segment,) = seg.segments
    expected = vol.array > vol.array.astype(np.float32).mean()
    assert seg.shape == vol.shape and np.array_equal(np.asarray(segment.mask, bool), expected)


def test_serve_on_a_busy_port_is_one_clear_line(monkeypatch, capsys):
    import socket

    monkeypatch.delenv("TEXTSEG_API_KEY", raising=False)
    monkeypatch.setattr("TextSegLib.models.catalog.load_engine", lambda *a, **k: pytest.fail("model loaded"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"Port {port} on 127.0.0.1 is already in use" in err and "--port" in err


def test_serve_devices_list_gives_one_worker_per_device(monkeypatch):
    from TextSegLib.cli import serve

    made = []

    def load(model, path, device="auto"):
        made.append(device)
        d = _Dummy()
        d.device = device
        return d

    monkeypatch.setattr("TextSegLib.models.catalog.load_engine", load)
    app, engine = serve.build_app("127.0.0.1", None, None, "cpu, cpu:1", None, 1.0, None, max_queued=5, per_client=2)
    assert made == ["cpu", "cpu:1"] and app.state.jobs.devices == ["cpu", "cpu:1"]
    assert app.state.jobs.max_queued == 5 and app.state.jobs.per_client == 2
    app.state.jobs.stop()
