"""Kill the server mid-job and start it again: one clear line, then a retry re-uploads and succeeds;
nothing half-written is left on the client."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

from _remote_helpers import free_port, small_volume
from TextSegLib.io import read_seg_nrrd, write_volume

HERE = Path(__file__).parent


def start_server(port: int, slab_wait: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(HERE / "_slab_server.py"), str(port), str(slab_wait)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read().decode()[-500:]}")


def segment_cmd(src: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "TextSegLib.cli.main", "segment", str(src), "-p", "bright", "-o", str(out),
            "--modality", "ct", "--server", url, "--quiet"]


def test_kill_and_restart_mid_job(tmp_path):
    src = tmp_path / "scan.nrrd"
    vol = small_volume((12, 10, 40))
    write_volume(vol, src)
    out = tmp_path / "out.seg.nrrd"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, 0.25)  # 40 slabs × 0.25 s: a 10 s job
    try:
        cli = subprocess.Popen(segment_cmd(src, out, url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=os.environ.copy())
        for _ in range(300):
            info = requests.get(f"{url}/v1/info", timeout=5).json()
            if info["queue"]["running"]:
                break
            time.sleep(0.05)
        assert info["queue"]["running"] == 1
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        _, err = cli.communicate(timeout=60)
        assert cli.returncode != 0
        lines = [ln for ln in err.splitlines() if ln.startswith("textseg: error")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("textseg: error: Lost job") and "stopped or restarted" in lines[0], lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nrrd"]  # nothing half-written
        server = start_server(port, 0.0)
        done = subprocess.run(segment_cmd(src, out, url), capture_output=True, text=True, timeout=120,
                              env=os.environ.copy())
        assert done.returncode == 0, done.stderr
        images = requests.get(f"{url}/v1/info", timeout=5).json()["images"]
        assert images["count"] == 1  # the restarted server got the scan again
        seg = read_seg_nrrd(out)
        expected = vol.array > vol.array.astype(np.float32).mean()
        assert np.array_equal(np.asarray(seg.segments[0].mask, bool), expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.seg.nrrd", "scan.nrrd"]
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(10)
