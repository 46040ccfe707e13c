"""``TextSegLib.engine.jobs.Job``: states, progress, cancel (queued and running), errors, threads."""
from __future__ import annotations

import threading

import numpy as np

from _remote_helpers import SlabEngine, small_volume
from TextSegLib.engine.jobs import CANCELLED, DONE, FAILED, QUEUED, Job
from TextSegLib.errors import CancelledError, TerminologyError


def test_synchronous_run_reports_progress_and_result():
    vol = small_volume()
    job = Job(vol, ["bright"], modality="ct", meta={"owner_note": "x"})
    assert job.state == QUEUED and job.snapshot()["state"] == "queued"
    job.run(SlabEngine())
    snap = job.snapshot()
    assert job.state == DONE and snap["stage"] == "done" and snap["error"] is None
    assert (job.done, job.total) == (vol.shape[2], vol.shape[2]) and snap["owner_note"] == "x"
    assert np.array_equal(job.result.masks["bright"], vol.array > vol.array.astype(np.float32).mean())
    assert job.volume is None and snap["timings"]["run_s"] >= 0 and snap["timings"]["total_s"] >= snap["timings"]["run_s"]


def test_engine_error_fails_the_job_with_its_message():
    job = Job(small_volume(), ["liver"])
    job.run(SlabEngine())
    assert job.state == FAILED and isinstance(job.error, TerminologyError)
    assert "cannot segment ['liver']" in job.snapshot()["error"]


def test_cancel_queued_job_never_runs():
    engine = SlabEngine()
    job = Job(small_volume(), ["bright"])
    assert job.request_cancel() is True
    job.run(engine)
    assert job.state == CANCELLED and engine.slabs_run == 0 and job.wait(0)


def test_cancel_running_job_on_a_thread_stops_within_a_slab():
    gate = threading.Event()
    engine = SlabEngine(gate=gate, slab_wait=0.05)
    job = Job(small_volume((6, 6, 80)), ["bright"])
    job.start(engine)
    v = 0
    while job.done < 2:
        v = job.wait_change(v, 5)
    assert job.request_cancel() is False
    assert job.wait(5) and job.state == CANCELLED and isinstance(job.error, CancelledError)
    assert engine.slabs_run < 20


def test_on_result_hook_runs_before_done_and_its_error_fails_the_job():
    packed = []
    job = Job(small_volume(), ["dark"])
    job.run(SlabEngine(), on_result=lambda j, r: packed.append((j.stage, sorted(r.masks))))
    assert packed == [("packing", ["dark"])] and job.state == DONE

    def boom(j, r):
        raise ValueError("disk full")

    job = Job(small_volume(), ["dark"])
    job.run(SlabEngine(), on_result=boom)
    assert job.state == FAILED and job.error_message == "Internal error: ValueError: disk full"


class _StepRunner:
    """A runner that finishes the job on its third step (as a remote engine would)."""

    def __init__(self, engine, fail_with=None):
        self.engine, self.fail_with, self.steps, self.cancelled = engine, fail_with, 0, 0

    def step(self, job):
        self.steps += 1
        if self.fail_with is not None:
            raise self.fail_with
        job.progress("remote", self.steps, 3)
        if self.steps == 3:
            job.succeed(self.engine.segment(job.volume, job.prompts))

    def cancel(self, job):
        self.cancelled += 1
        job.fail(CancelledError("cancelled on the server"))


def test_runner_driven_job_advances_one_step_per_poll():
    job = Job(small_volume(), ["bright"], runner=_StepRunner(SlabEngine()))
    assert job.view().status == QUEUED
    first = job.poll()
    assert (first.status, first.stage, first.done, first.total) == ("running", "remote", 1, 3)
    assert job.poll().status == "running" and job.poll().status == DONE
    assert job.runner.steps == 3 and job.poll().status == DONE and job.runner.steps == 3  # no step after the end
    assert job.result.is_found("bright") and job.elapsed_s >= 0


def test_runner_error_fails_the_job_and_cancel_reaches_the_runner():
    job = Job(small_volume(), ["bright"], runner=_StepRunner(SlabEngine(), fail_with=TerminologyError("no such term")))
    view = job.poll()
    assert view.status == FAILED and view.message == "no such term"
    runner = _StepRunner(SlabEngine())
    job = Job(small_volume(), ["bright"], runner=runner)
    job.poll()
    assert job.request_cancel() is False and runner.cancelled == 1 and job.state == CANCELLED
    assert job.wait(1) and runner.steps == 1


def test_result_missing_a_prompt_fails_the_job():
    class Forgetful(SlabEngine):
        def segment(self, volume, prompts, **kw):
            res = super().segment(volume, prompts, **kw)
            res.masks.pop("dark")
            return res

    job = Job(small_volume(), ["bright", "dark"])
    job.run(Forgetful())
    assert job.state == FAILED and "returned no mask for ['dark']" in job.error_message


def test_server_and_slicer_jobs_are_the_one_job_class():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "TextSeg"))
    from TextSegLogicLib.job import SceneJob
    from TextSegLib.remote.queue import ServerJob

    assert issubclass(SceneJob, Job) and issubclass(ServerJob, Job)
    for name in ("poll", "wait", "request_cancel", "progress", "succeed", "fail", "view", "snapshot"):
        assert getattr(SceneJob, name) is getattr(Job, name), name
    job = SceneJob(small_volume(), [], volume_node_id="vtkMRMLScalarVolumeNode1")
    job.fail(CancelledError("stop"))
    assert job.state == CANCELLED and job.volume is not None  # the logic still measures on it
