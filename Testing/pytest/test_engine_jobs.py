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
