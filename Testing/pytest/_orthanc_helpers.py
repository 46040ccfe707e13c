"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

Started on a random loopback port with a fresh storage folder,
``RemoteAccessAllowed: false``, HTTP Basic authentication on (one registered
user with a random password) and the DICOM (C-STORE) server off; stopped by
its PID. Orthanc 1.10 (Debian bookworm) has no HTTP bind-address option
(``HttpBindAddresses`` arrived in 2025), so it listens on all interfaces but
answers only loopback clients.
"""
from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)


def dicomweb_plugin() -> str | None:
    """The DICOMweb plugin's path, from ``dpkg -L orthanc-dicomweb`` (or the usual place)."""
    try:
        out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=20).stdout
        for line in out.splitlines():
            if line.endswith("libOrthancDicomWeb.so"):
                return line
    except (OSError, subprocess.SubprocessError):
        pass
    return next((p for p in PLUGIN_CANDIDATES if Path(p).is_file()), None)


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (str(Path("/usr/sbin/Orthanc")) if Path("/usr/sbin/Orthanc").is_file() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    root: str  # http://127.0.0.1:PORT
    user: str
    password: str
    pid: int
    log: Path

    @property
    def dicomweb(self) -> str:
        return self.root + "/dicom-web"

    @property
    def credentials(self) -> str:
        return f"{self.user}:{self.password}"


def start_orthanc(folder: Path, timeout: float = 60.0) -> tuple[Orthanc, subprocess.Popen]:
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if not binary or not plugin:
        raise RuntimeError("Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir()
    port, password = free_port(), secrets.token_urlsafe(16)
    config = {
        "Name": "textseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {"textseg": password},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}"},
        "OrthancExplorerEnabled": False, "RemoteLuaScripts": False, "ConcurrentJobs": 1, "HttpThreadsCount": 8,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    log = folder / "orthanc.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([binary, str(cfg)], cwd=folder, stdout=fh, stderr=subprocess.STDOUT)
    server = Orthanc(f"http://127.0.0.1:{port}", "textseg", password, proc.pid, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(server.root + "/system", auth=(server.user, password), timeout=2).status_code == 200:
                return server, proc
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop_orthanc(proc)
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def stop_orthanc(proc: subprocess.Popen) -> None:
    """SIGTERM to Orthanc's own PID, then SIGKILL if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def skip_module_without_orthanc() -> None:
    """Skip the calling test module where Debian's Orthanc or its DICOMweb plugin is absent."""
    if not orthanc_binary() or not dicomweb_plugin():
        pytest.skip("Debian orthanc + orthanc-dicomweb are not installed here (.ci/run installs them)",
                    allow_module_level=True)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc for one test module (import this fixture there), stopped by its PID after it."""
    server, proc = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    stop_orthanc(proc)
    assert proc.poll() is not None
