"""The GUI-tick scenario shared by test_module_gui_ticks.py and benchmarks/bench_gui_ticks.py.

A TextSeg logic on slicer-core MRML runs jobs through its engine process (``textseg serve``
on loopback, real uvicorn) under the PythonQt-like GIL-holding host (:mod:`_gil_host`): the
host calls the timer slot every 100 ms (``job.poll()``; when the job ended, the MRML import),
and a Cancel "click" happens between two ticks, as a Qt event would. Every tick's wall and CPU
time is logged by phase: start, upload, queue, progress, download; the import and the clicks
are logged as phases of their own.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _gil_host import TickLog, run_host_logged

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SAMPLE = ROOT / "Resources" / "samples" / "abdomen_ct_sample.nii.gz"
TICK_PHASES = ("start", "upload", "queue", "progress", "download")


def slow_python(folder: Path, delay_s: float, *serve_options: str) -> str:
    """An interpreter for the engine process whose ``textseg serve`` loads its model ``delay_s``
    seconds slower (see ``_slow_serve.py``), with extra serve options (e.g. ``--max-queued 1``)."""
    path = Path(folder) / "slow-python"
    opts = " ".join(serve_options)
    path.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{HERE / '_slow_serve.py'}' {delay_s} {opts} -- \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def ct_node(env: Any, folder: Path, shape: tuple[int, int, int], offset: int = 0, name: str = "ct") -> Any:
    """A CT-like volume node of ``shape``: the sample abdomen CT resampled in-plane and repeated along
    K (real intensities and anatomy; ``offset`` HU added makes a different scan)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(SAMPLE))
    kji = sitk.GetArrayFromImage(img).astype(np.int16)
    ni, nj, nk = shape
    jj = np.linspace(0, kji.shape[1] - 1, nj).round().astype(int)
    ii = np.linspace(0, kji.shape[2] - 1, ni).round().astype(int)
    plane = kji[:, jj][:, :, ii]
    reps = -(-nk // plane.shape[0])
    out = np.concatenate([plane, plane[::-1]] * ((reps + 1) // 2), axis=0)[:nk] + np.int16(offset)
    big = sitk.GetImageFromArray(np.ascontiguousarray(out))
    sx, sy, sz = img.GetSpacing()
    big.SetSpacing((sx * kji.shape[2] / ni, sy * kji.shape[1] / nj, sz))
    big.SetOrigin(img.GetOrigin())
    big.SetDirection(img.GetDirection())
    path = Path(folder) / f"{name}.nrrd"
    sitk.WriteImage(big, str(path), useCompression=False)
    return env.load_volume(path, name)


def phase_of(job: Any) -> str:
    """The job's phase for the tick log: start, upload, queue, progress, download or done."""
    if job.is_final:
        return "done"
    r = job.runner
    p = getattr(r, "phase", "start")
    if p == "progress" and getattr(r, "server_state", "") in ("", "queued"):
        return "queue"  # waiting in the server's queue (after a full queue, or behind other jobs)
    return p


class Scenario:
    """Jobs of one logic under the GIL host, logged into one :class:`TickLog`."""

    def __init__(self, logic: Any, log: TickLog | None = None) -> None:
        self.logic, self.log = logic, log or TickLog()
        self.cancels: list[dict] = []
        self.imports: list[float] = []
        self.seen: set[str] = set()

    def run(self, node: Any, prompts: str = "liver", *, cancel_in: str = "", cancel_after: int = 0,
            timeout_s: float = 600.0) -> Any:
        """One job from the Segment click to its import (or to a Cancel click in phase ``cancel_in``
        after ``cancel_after`` ticks there). Returns the job."""
        job = self.log.timed("click: Segment", lambda: self.logic.start(node, prompts, modality="ct"))
        state = {"in_phase": 0, "cancel_at": None, "ticks_after": 0, "imported": False}

        def tick() -> None:
            job.poll()

        def between() -> None:
            phase = phase_of(job)
            self.seen.add(phase)
            if state["cancel_at"] is not None:
                state["ticks_after"] += 1
            if job.is_final and not state["imported"]:
                state["imported"] = True
                if job.state == "done":
                    t = time.perf_counter()
                    self.log.timed("import (MRML)", lambda: self.logic.finish(job))
                    self.imports.append(time.perf_counter() - t)
                return
            if cancel_in and state["cancel_at"] is None and phase == cancel_in:
                if state["in_phase"] >= cancel_after:
                    state["cancel_at"] = time.perf_counter()
                    state["phase"] = phase
                    self.log.timed("click: Cancel", job.request_cancel)
                    state["final_after_click"] = job.is_final
                    if job.is_final:
                        state["latency"] = time.perf_counter() - state["cancel_at"]
                state["in_phase"] += 1

        seconds, ticks, done = run_host_logged(tick, lambda: job.is_final and state["imported"], lambda: phase_of(job),
                                               self.log, timeout_s=timeout_s, between=between)
        if not done:
            job.request_cancel()
            raise AssertionError(f"job not over after {seconds:.0f} s ({ticks} ticks), phase {phase_of(job)}")
        if cancel_in:
            if state["cancel_at"] is None:
                raise AssertionError(f"the job never was in phase {cancel_in!r} (it ended {job.state})")
            self.cancels.append({"phase": cancel_in, "final_at_click": state.get("final_after_click", False),
                                 "latency_s": state.get("latency", float("inf")),
                                 "ticks_after": state["ticks_after"], "state": job.state,
                                 "remote_job": getattr(job.runner, "remote_job", None)})
        return job

    def report(self) -> str:
        rows = [f"{'phase':<16}{'ticks':>7}{'longest ms':>12}{'p99 ms':>9}{'CPU of longest':>16}"]
        for phase in list(TICK_PHASES) + [p for p in self.log.phases() if p not in TICK_PHASES]:
            s = self.log.stats(phase)
            if s["ticks"]:
                rows.append(f"{phase:<16}{s['ticks']:>7}{1e3 * s['longest']:>12.1f}{1e3 * s['p99']:>9.1f}"
                            f"{1e3 * s['longest_cpu']:>13.1f} ms")
        for c in self.cancels:
            rows.append(f"cancel in {c['phase']:<9}: job {c['state']} {1e3 * c['latency_s']:.1f} ms after the click "
                        f"({'final before the next tick' if c['final_at_click'] else 'NOT final at once'})")
        return "\n".join(rows)


def occupy(process: Any, node_volume: Any, jobs: int = 2) -> list:
    """Fill the engine's queue from a second client (blocking submits, outside the timed ticks)."""
    from TextSegLib.remote import RemoteEngine

    other = RemoteEngine(process.url, api_key=process._token, compress=False, client_name="other-user")
    return [other.submit(node_volume, ["liver"], modality="ct") for _ in range(jobs)]


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), load average {os.getloadavg()[0]:.2f}"
