"""DICOMweb settings (args, env, config file) and the client's retries and error messages.

Server behaviours Orthanc cannot be made to show on demand (503 then success, 413) come from a
small real HTTP server on loopback that answers with those status codes.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from TextSegLib.pacs import PacsClient, PacsError, resolve_settings
from _orthanc_helpers import free_port

pytest.importorskip("dicomweb_client")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for k in ("TEXTSEG_DICOMWEB_URL", "TEXTSEG_DICOMWEB_TOKEN", "TEXTSEG_DICOMWEB_USER", "TEXTSEG_DICOMWEB_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))


def test_settings_order_args_env_file(tmp_path, monkeypatch):
    cfg = tmp_path / "home" / "dicomweb.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"url": "http://file.example/dw", "token": "file-token", "timeout": 5}))
    cfg.chmod(0o600)
    s = resolve_settings()
    assert (s.url, s.token, s.timeout) == ("http://file.example/dw", "file-token", 5.0)
    monkeypatch.setenv("TEXTSEG_DICOMWEB_URL", "http://env.example/dw/")
    monkeypatch.setenv("TEXTSEG_DICOMWEB_TOKEN", "env-token")
    s = resolve_settings()
    assert (s.url, s.token) == ("http://env.example/dw", "env-token")
    s = resolve_settings("http://arg.example/dw", token="arg-token")
    assert (s.url, s.token) == ("http://arg.example/dw", "arg-token")
    assert "arg-token" not in repr(s) and "arg-token" not in str(s)


def test_secret_config_readable_by_others_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"url": "http://x.example/dw", "user": "a:b"}))
    cfg.chmod(0o644)
    with pytest.raises(PacsError, match="other users can read it.*chmod 600"):
        resolve_settings(config=cfg)


def test_no_server_and_bad_url_are_clear():
    with pytest.raises(PacsError, match="no DICOMweb server is configured.*TEXTSEG_DICOMWEB_URL"):
        resolve_settings()
    with pytest.raises(PacsError, match="not an http"):
        resolve_settings("ftp://pacs.example/dw")


def test_credentials_in_url_are_moved_out():
    s = resolve_settings("http://alice:pa%3Ass@pacs.example:8042/dicom-web")
    assert s.url == "http://pacs.example:8042/dicom-web" and (s.username, s.password) == ("alice", "pa:ss")
    assert "pa:ss" not in repr(s)


class _Flaky(BaseHTTPRequestHandler):
    hits: list[str] = []
    fail_first = 2

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        type(self).hits.append(self.headers.get("Authorization", ""))
        if len(type(self).hits) <= type(self).fail_first:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(413)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def flaky():
    _Flaky.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


def test_transient_503_is_retried_and_token_sent(flaky):
    client = PacsClient(resolve_settings(flaky, token="t0ken"), retries=3)
    assert client.find_studies() == []
    assert len(_Flaky.hits) == 3 and set(_Flaky.hits) == {"Bearer t0ken"}


def test_503_beyond_retries_is_a_clear_error(flaky):
    _Flaky.fail_first = 10
    try:
        with pytest.raises(PacsError, match="HTTP 503 after retries"):
            PacsClient(resolve_settings(flaky), retries=1).find_series()
    finally:
        _Flaky.fail_first = 2


def test_413_says_what_to_do(flaky, tmp_path):
    from _dicomseg_helpers import build_series

    folder = build_series(tmp_path / "s", "axial")
    with pytest.raises(PacsError, match="too large \\(HTTP 413\\).*LABELMAP"):
        PacsClient(resolve_settings(flaky)).push([sorted(folder.iterdir())[0]])


def test_connection_refused_is_clear():
    client = PacsClient(resolve_settings(f"http://127.0.0.1:{free_port()}/dicom-web", token="zzz"), retries=1)
    with pytest.raises(PacsError, match="cannot connect") as err:
        client.find_studies()
    assert "zzz" not in str(err.value)


def test_user_without_password_is_refused_before_anything_is_sent(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path))
    with pytest.raises(PacsError, match="user 'tester' has no password"):
        resolve_settings("http://127.0.0.1:9/dicom-web", user="tester")


def test_multi_valued_attributes_print_as_a_list_of_words():
    from TextSegLib.pacs.client import series_table

    text = series_table([{"StudyInstanceUID": "1.2", "ModalitiesInStudy": ["CT", "SEG"]}],
                        ["StudyInstanceUID", "ModalitiesInStudy"])
    assert "CT, SEG" in text and "[" not in text
