"""The module's engine process (``textseg serve`` on loopback) and the PythonQt-like GIL host.

* The host itself is checked first: a Python worker thread doing GIL-releasing calls crawls
  there (as issue 13 measured in a C host), so the harness really models PythonQt.
* Then a run of the logic through the engine process, with the bundled model on the sample
  CT, finishes under that host within 1.2x (+ one tick) of the same run polled freely.
* A killed engine process is reported in one line and restarted by the next run.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from _gil_host import run_host
from _module_helpers import ROOT

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
pytest.importorskip("uvicorn", reason="the engine process is `textseg serve` (server extra)")

from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLogicLib import TextSegLogic  # noqa: E402
from TextSegLogicLib.engine_process import EngineConfig, EngineProcess, EngineProcessError  # noqa: E402

SAMPLE = ROOT / "Resources" / "samples" / "abdomen_ct_sample.nii.gz"


def test_host_starves_python_threads_like_pythonqt():
    """40 GIL-releasing sleeps of 1 ms: ~0.05 s on a free interpreter, seconds under the host."""
    def worker(out: list) -> None:
        t = time.perf_counter()
        for _ in range(40):
            time.sleep(0.001)
        out.append(time.perf_counter() - t)

    free: list = []
    th = threading.Thread(target=worker, args=(free,))
    th.start()
    th.join()
    hosted: list = []
    th = threading.Thread(target=worker, args=(hosted,))
    th.start()
    seconds, ticks, done = run_host(lambda: None, lambda: not th.is_alive(), timeout_s=60)
    th.join()
    print(f"worker thread: free {free[0]:.3f} s, under the GIL-holding host {hosted[0]:.2f} s ({ticks} ticks)")
    assert done and hosted[0] > 1.0 and hosted[0] > 10 * free[0]


@pytest.fixture(scope="module")
def env():
    return make_scene()


@pytest.fixture(scope="module")
def bundled_logic(env):
    logic = TextSegLogic(**env.logics())
    logic.use_model("bundled", device="cpu")
    yield logic
    logic.shutdown()


def _run(logic, node, hosted: bool) -> tuple[float, object]:
    job = logic.start(node, "liver", modality="ct")
    if hosted:
        seconds, ticks, done = run_host(job.poll, lambda: job.is_final, timeout_s=600)
        assert done, f"no result after {seconds:.0f} s under the GIL-holding host"
    else:
        t0 = time.perf_counter()
        assert job.wait(600, poll_s=0.1)
        seconds = time.perf_counter() - t0
    return seconds, job


@pytest.mark.slow
def test_engine_process_run_under_gil_holding_host(env, bundled_logic):
    node = env.load_volume(SAMPLE)
    logic = bundled_logic
    t0 = time.perf_counter()
    seconds, job = _run(logic, node, hosted=False)  # first run: starts the process and loads the model
    startup = time.perf_counter() - t0
    assert job.state == "done", job.error
    seg = logic.finish(job)
    (sid,) = [seg.GetSegmentation().GetNthSegmentID(i) for i in range(seg.GetSegmentation().GetNumberOfSegments())]
    assert seg.GetSegmentation().GetSegment(sid).GetName() == "Liver"
    assert job.measurements[0].found and job.measurements[0].volume_ml > 100  # the sample's liver, 20 slices
    pid = logic.process.pid
    free, job = _run(logic, node, hosted=False)
    hosted, job2 = _run(logic, node, hosted=True)
    assert logic.process.pid == pid and logic.process.starts == 1  # the model stayed loaded
    assert job2.state == "done" and (job2.result.masks["liver"] == job.result.masks["liver"]).all()
    print(f"first run incl. start-up {startup:.1f} s; warm run polled freely {free:.1f} s; "
          f"under the GIL-holding host {hosted:.1f} s")
    if hosted > 1.2 * free + 0.5:
        # a shared CI machine's load can swing between two runs of 20-60 s: pair them once more, the
        # other way round, and compare the faster of each (the old thread design took > 120 s here)
        hosted2, _ = _run(logic, node, hosted=True)
        free2, _ = _run(logic, node, hosted=False)
        print(f"second pair: hosted {hosted2:.1f} s, free {free2:.1f} s")
        hosted, free = min(hosted, hosted2), min(free, free2)
    assert hosted <= 1.2 * free + 0.5, (hosted, free)


@pytest.mark.slow
def test_killed_engine_process_is_reported_and_restarted(env, bundled_logic):
    node = env.load_volume(SAMPLE)
    logic = bundled_logic
    job = logic.start(node, "liver", modality="ct")
    while job.poll().status == "running" and job.runner.remote_job is None:
        time.sleep(0.05)
    os.kill(logic.process.pid, signal.SIGKILL)  # the process this test's logic started
    assert job.wait(60)
    assert job.state == "failed" and isinstance(job.error, EngineProcessError)
    message = str(job.error)
    assert "stopped with exit code -9" in message and "restarted on the next run" in message
    assert "\n" not in message
    starts = logic.process.starts
    seconds, job = _run(logic, node, hosted=False)
    assert job.state == "done" and logic.process.starts == starts + 1


def test_engine_process_bad_interpreter_is_one_line(tmp_path):
    process = EngineProcess(EngineConfig(python=str(tmp_path / "no-python")))
    with pytest.raises(EngineProcessError, match="could not be started"):
        process.ensure_started()


def test_engine_process_crash_at_start_is_one_line(tmp_path):
    """An interpreter without TextSeg's requirements: the process exits, the reason is its last line."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    fake.chmod(0o755)
    process = EngineProcess(EngineConfig(python=str(fake)))
    process.ensure_started()
    with pytest.raises(EngineProcessError) as err:
        for _ in range(100):
            process.check()
            time.sleep(0.05)
    assert "exit code 3" in str(err.value) and "No module named torch" in str(err.value)
    assert "TEXTSEG_API_KEY" not in str(err.value)
