"""Where cases run: in this process, or in N local worker processes (one model each).

A backend is started (workers load their model), reports :class:`EngineFacts`, then runs a
queue of tasks, calling ``on_result(record)`` in the coordinator for each finished case and
checking ``stop()`` before handing out the next one (so a stop request lets running cases finish).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

from .manifest import FAILED
from .plan import EngineFacts, model_identity
from .worker import CaseProcessor, CaseTask, EngineSpec

#: a case whose worker process dies this many times is recorded as failed
MAX_CRASHES = 2
CRASH_ERROR = "The worker process died while processing this case (killed, or out of memory)."


class InlineBackend:
    """Cases run one after another in this process (``--workers 1``)."""

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self.processor: CaseProcessor | None = None

    def start(self) -> EngineFacts:
        self.processor = CaseProcessor(self.spec, identity=model_identity(self.spec))
        return EngineFacts.of(self.processor.engine)

    def run(self, tasks: Sequence[CaseTask], on_start: Callable, on_result: Callable, stop: Callable[[], bool]) -> None:
        for task in tasks:
            if stop():
                return
            on_start(task)
            on_result(self.processor.run(task))

    def close(self) -> None:
        self.processor = None


# -- local worker processes ---------------------------------------------------------
_PROCESSOR: CaseProcessor | None = None


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the coordinator dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _init(spec: EngineSpec, identity: dict) -> None:
    global _PROCESSOR
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the coordinator decides
    _die_with_parent()
    _PROCESSOR = CaseProcessor(spec, identity=identity)


def _facts() -> EngineFacts:
    return EngineFacts.of(_PROCESSOR.engine)


def _run(task: CaseTask) -> dict:
    return _PROCESSOR.run(task)


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes: the cores divided between them."""
    if threads:
        return int(threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


class PoolBackend:
    """``--workers N``: N spawned processes, each loading the model once, at most one case each."""

    def __init__(self, spec: EngineSpec, workers: int):
        from dataclasses import replace

        self.workers = workers
        self.spec = replace(spec, threads=threads_per_worker(workers, spec.threads))
        self.identity = model_identity(self.spec)
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init, initargs=(self.spec, self.identity))

    def start(self) -> EngineFacts:
        self.pool = self._new_pool()
        return self.pool.submit(_facts).result()

    def run(self, tasks: Sequence[CaseTask], on_start: Callable, on_result: Callable, stop: Callable[[], bool]) -> None:
        try:
            self._run(tasks, on_start, on_result, stop)
        except KeyboardInterrupt:  # a second Ctrl-C: abort the running cases too
            self._kill_pool()
            self.pool = None
            raise

    def _run(self, tasks: Sequence[CaseTask], on_start: Callable, on_result: Callable, stop: Callable[[], bool]) -> None:
        queue = list(tasks)[::-1]
        crashes: dict[str, int] = {}
        inflight: dict = {}
        while queue or inflight:
            while queue and not stop() and len(inflight) < self.workers:
                task = queue.pop()
                on_start(task)
                inflight[self.pool.submit(_run, task)] = task
            if not inflight:
                return
            done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            broken = []
            for fut in done:
                task = inflight.pop(fut)
                try:
                    on_result(fut.result())
                except BrokenProcessPool:
                    broken.append(task)
            if broken:  # a worker died: every case in flight is lost with it; retry them on a new pool
                broken += list(inflight.values())
                inflight.clear()
                self._kill_pool()
                self.pool = self._new_pool()
                for task in broken:
                    crashes[task.spec.case_id] = crashes.get(task.spec.case_id, 0) + 1
                    if crashes[task.spec.case_id] >= MAX_CRASHES:
                        on_result({"kind": "case", "case_id": task.spec.case_id, "path": task.spec.path,
                                   "state": FAILED, "error": CRASH_ERROR, "attempt": task.attempt, **self.identity})
                    else:
                        queue.append(task)

    def _kill_pool(self) -> None:
        """End a broken pool's surviving workers before their cases run again elsewhere (two
        processes must never write the same case)."""
        procs = list(getattr(self.pool, "_processes", {}).values())
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(timeout=30)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
