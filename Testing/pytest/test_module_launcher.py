"""Every stop path ends the whole engine tree, through a launcher like Slicer's.

Inside Slicer the engine's interpreter is ``PythonSlicer``, CTK's launcher, which starts
``python-real`` as its child and forwards no signal (``_ctk_launcher.py`` is the stand-in,
with its sources). Through it: stop, a model switch, module cleanup, a cancelled download,
and kill -9 of the "Slicer" process that started the engine. After each, no process of
the tree is alive within 10 s and the engine's port is free.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

from _ctk_launcher import write_launcher
from _module_helpers import ROOT

pytest.importorskip("uvicorn", reason="the engine process is `textseg serve` (server extra)")

from TextSegLogicLib import engine_process  # noqa: E402
from TextSegLogicLib.downloads import ModelDownload  # noqa: E402
from TextSegLogicLib.engine_process import EngineConfig, EngineProcess, EngineProcessError  # noqa: E402
from TextSegLogicLib.proctree import (  # noqa: E402
    kill_tree, leftovers, popen_options, process_table, snapshot, taskkill_command)

BUNDLED = ROOT / "Resources" / "models" / "textseg-mini"


@pytest.fixture(scope="module")
def launchers(tmp_path_factory):
    paths = {}
    for mode in ("ignore", "default"):
        paths[mode] = write_launcher(tmp_path_factory.mktemp(f"slicer-bin-{mode}"), mode)
    return paths


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _started_tree(process: EngineProcess):
    """The ready engine's tree: the launcher and, below it, the real interpreter serving."""
    process.wait_ready(120)
    tree = snapshot(process.pid)
    assert len(tree.alive()) >= 2, tree  # launcher + python-real: a signal to the first misses the second
    return tree


@pytest.mark.parametrize("mode", ["ignore", "default"])
def test_stop_ends_launcher_and_interpreter(launchers, mode):
    process = EngineProcess(EngineConfig(model="textseg-mini", device="cpu", python=launchers[mode]))
    tree = _started_tree(process)
    port, log = process.port, process._log_path
    t0 = time.monotonic()
    process.stop()
    print(f"launcher ({mode} SIGTERM): stop took {time.monotonic() - t0:.2f} s")
    assert leftovers([tree], [port], wait_s=10) == []
    assert not log.exists()  # a clean stop leaves no log in temp
    recorded, recorded_port = engine_process.STOPPED[-1]  # what the benchmark's check reads
    assert recorded_port == port and {m.pid for m in tree.members} <= {m.pid for m in recorded.members}
    assert engine_process.engine_leftovers(wait_s=10) == []


def test_model_switch_and_cleanup_stop_the_old_tree(launchers):
    slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")  # noqa: F841
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic

    logic = TextSegLogic(**make_scene().logics())
    logic.use_model("bundled", device="cpu", python=launchers["ignore"])
    first = logic._engine_process()
    tree, port = _started_tree(first), first.port
    logic.use_model("bundled", device="cpu", model_dir=str(BUNDLED), python=launchers["ignore"])  # another config
    assert logic.process is None
    assert leftovers([tree], [port], wait_s=10) == []
    second = logic._engine_process()
    tree, port = _started_tree(second), second.port
    logic.shutdown()  # module cleanup / application exit
    assert leftovers([tree], [port], wait_s=10) == []


_STALL = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
s.settimeout(1.0)
end = time.monotonic() + 300
while time.monotonic() < end:  # bounded: it stops by itself
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
"""


class _StalledHub:
    """A 'Hugging Face' endpoint that accepts connections and never answers (a download in progress).
    It runs in its own process, so the hub client's retries always find it listening."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _STALL], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_cancel_download_ends_the_tree(launchers, tmp_path, monkeypatch):
    hub = _StalledHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "120")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "120")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # huggingface_hub reads it as HF_HUB_OFFLINE too
    try:
        job = ModelDownload("SAT-Nano", dest=str(tmp_path / "sat"), python=launchers["ignore"])
        end = time.monotonic() + 60
        while "downloading" not in job.last_line() and time.monotonic() < end:
            assert job.poll()[0] == "running", job.lines()
            time.sleep(0.1)
        assert "downloading" in job.last_line(), job.lines()
        tree = snapshot(job.proc.pid)
        assert len(tree.alive()) >= 2, tree
        job.cancel()
        assert job.state == "cancelled" and not job.log_path.exists()
        assert leftovers([tree], wait_s=10) == []
    finally:
        hub.close()


SLICER = """
import json, sys, time
sys.path[:0] = [{root!r}, {module!r}]
from TextSegLogicLib.engine_process import EngineConfig, EngineProcess
p = EngineProcess(EngineConfig(model="textseg-mini", device="cpu", python={python!r}))
p.wait_ready(120)
print(json.dumps({{"pid": p.pid, "port": p.port}}), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("mode", ["ignore", "default"])
def test_killed_slicer_leaves_no_engine(launchers, mode):
    """kill -9 of the application that started the engine: the server sees its parent PID go."""
    code = SLICER.format(root=str(ROOT), module=str(ROOT / "TextSeg"), python=launchers[mode])
    fake = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        info = json.loads(fake.stdout.readline() or "{}")
        assert info, "the fake Slicer did not get its engine ready"
        tree = snapshot(fake.pid)
        assert len(tree.alive()) >= 3, tree  # Slicer, launcher, python-real
        os.kill(fake.pid, signal.SIGKILL)
        fake.wait(10)
        t0 = time.monotonic()
        assert leftovers([tree], [info["port"]], wait_s=10) == []
        print(f"launcher ({mode}): engine gone {time.monotonic() - t0:.1f} s after kill -9 of its Slicer")
    finally:
        if fake.poll() is None:
            fake.kill()
        fake.wait(10)


def test_serve_exits_when_its_parent_pid_ends(tmp_path):
    parent = subprocess.Popen(["sleep", "60"])
    port = engine_process.free_port()
    serve = subprocess.Popen([sys.executable, "-m", "TextSegLib.cli.main", "serve", "--port", str(port),
                              "--model-path", str(BUNDLED), "--device", "cpu", "--parent-pid", str(parent.pid)],
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        time.sleep(1.0)
        assert serve.poll() is None
        parent.kill()
        parent.wait()
        code = serve.wait(15)
        err = serve.stderr.read()
        assert code == 0 and f"parent process {parent.pid} has ended" in err, err
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


# -- logs -----------------------------------------------------------------------------------
def _fake_python(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_crash_keeps_the_last_log_and_names_it(tmp_path):
    crash = _fake_python(tmp_path, "crash", "echo 'RuntimeError: CUDA out of memory' >&2\nexit 3\n")
    logs = []
    for _ in range(2):
        process = EngineProcess(EngineConfig(python=crash))
        process.ensure_started()
        with pytest.raises(EngineProcessError) as err:
            for _ in range(200):
                process.check()
                time.sleep(0.05)
        log = process._log_path
        assert f"(log: {log})" in str(err.value) and "\n" not in str(err.value)
        assert log.exists() and "CUDA out of memory" in log.read_text()
        logs.append(log)
    assert not logs[0].exists()  # only the last crash log is kept
    hang = _fake_python(tmp_path, "hang", "echo starting\nexec sleep 60\n")
    process = EngineProcess(EngineConfig(python=hang))
    process.ensure_started()
    log = process._log_path
    process.stop()
    assert not log.exists() and logs[1].exists()


# -- units: Windows command construction, process table ---------------------------------------
def test_windows_kill_is_taskkill_of_the_tree_with_hidden_console():
    calls = []
    proc = types.SimpleNamespace(pid=4321, poll=lambda: None, wait=lambda timeout=None: 0, kill=lambda: None)
    kill_tree(proc, windows=True, run=lambda cmd, **kw: calls.append((cmd, kw)),
              startupinfo_factory=lambda: types.SimpleNamespace(dwFlags=0, wShowWindow=1))
    assert taskkill_command(4321) == ["taskkill", "/T", "/F", "/PID", "4321"]
    ((cmd, kw),) = calls
    assert cmd == ["taskkill", "/T", "/F", "/PID", "4321"]
    assert kw["startupinfo"].dwFlags & 1 and kw["startupinfo"].wShowWindow == 0


def test_posix_children_get_their_own_session():
    assert popen_options(windows=False) == {"start_new_session": True}
    proc = subprocess.Popen(["sleep", "30"], **popen_options(windows=False))
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    finally:
        kill_tree(proc, grace_s=1)
    assert proc.returncode == -signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares /proc with ps")
def test_process_table_from_proc_matches_ps():
    proc = subprocess.Popen(["sleep", "30"], **popen_options(windows=False))
    try:
        fast, ps = process_table(), process_table(use_ps=True)
        for table in (fast, ps):
            row = table[proc.pid]
            assert (row.ppid, row.pgid, row.name) == (os.getpid(), proc.pid, "sleep")
        assert fast[os.getpid()].ppid == ps[os.getpid()].ppid
    finally:
        kill_tree(proc, grace_s=1)


def test_kill_tree_reaches_a_grandchild_that_left_the_group():
    code = ("import subprocess, sys, time; c = subprocess.Popen(['sleep', '60'], start_new_session=True); "
            "print(c.pid, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            **popen_options(windows=False))
    grandchild = int(proc.stdout.readline())
    tree = kill_tree(proc, grace_s=2)
    assert grandchild in [m.pid for m in tree.members]
    assert leftovers([tree], wait_s=10) == []
