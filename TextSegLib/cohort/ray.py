"""``--ray auto|local|ADDRESS``: cases on a Ray cluster, one actor per worker holding the model.

Inputs and the run folder must be on storage every node sees (same paths). Each actor asks for
``threads`` CPUs and, when the model needs one, a GPU. Ray restarts a lost actor and retries its
case (``max_restarts`` / ``max_task_retries``); if that fails too, the case goes back to the queue
of the coordinator, whose manifest alone decides what is done.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .backends import CRASH_ERROR, MAX_CRASHES
from .manifest import FAILED
from .plan import EngineFacts, model_identity
from .worker import CaseProcessor, CaseTask, EngineSpec

RESTARTS = 3


class CaseActor:
    """Holds one engine for the actor's life."""

    def __init__(self, spec: EngineSpec, identity: dict):
        self.processor = CaseProcessor(spec, identity=identity)

    def facts(self) -> EngineFacts:
        return EngineFacts.of(self.processor.engine)

    def pid(self) -> int:
        import os

        return os.getpid()

    def run(self, task: CaseTask) -> dict:
        return self.processor.run(task)


class RayBackend:
    def __init__(self, spec: EngineSpec, workers: int, address: str, gpus_per_worker: float | None = None):
        from dataclasses import replace

        self.workers, self.address, self.gpus = workers, address, gpus_per_worker
        self.spec = replace(spec, threads=spec.threads or 1)
        self.identity = model_identity(self.spec)
        self.actors: list = []
        self._started_here = False

    def _new_actor(self):
        return self._cls.remote(self.spec, self.identity)

    def start(self) -> EngineFacts:
        try:
            import ray
        except ImportError:
            from ..errors import TextSegError

            raise TextSegError("--ray needs Ray, which is not installed.",
                               "Install the extra: pip install 'textseg[cohort]'.") from None
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(num_cpus=self.workers * self.spec.threads, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            self._started_here = True
        gpus = self.gpus
        if gpus is None:
            gpus = 1.0 if self.spec.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        if gpus and self.spec.device == "auto":
            from dataclasses import replace

            self.spec = replace(self.spec, device="cuda")
        self._cls = ray.remote(num_cpus=self.spec.threads, num_gpus=gpus, max_restarts=RESTARTS,
                               max_task_retries=RESTARTS)(CaseActor)
        self.actors = [self._new_actor() for _ in range(self.workers)]
        return ray.get(self.actors[0].facts.remote())

    def run(self, tasks: Sequence[CaseTask], on_start: Callable, on_result: Callable, stop: Callable[[], bool]) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        queue = list(tasks)[::-1]
        idle = list(self.actors)
        inflight: dict = {}
        crashes: dict[str, int] = {}
        while queue or inflight:
            while queue and idle and not stop():
                task, actor = queue.pop(), idle.pop()
                on_start(task)
                inflight[actor.run.remote(task)] = (actor, task)
            if not inflight:
                return
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                actor, task = inflight.pop(ref)
                try:
                    on_result(ray.get(ref))
                    idle.append(actor)
                except RayTaskError as exc:  # the case raised outside the worker's own handling
                    on_result({"kind": "case", "case_id": task.spec.case_id, "path": task.spec.path,
                               "state": FAILED, "error": str(exc).splitlines()[-1][:500], **self.identity})
                    idle.append(actor)
                except RayActorError:  # the actor died beyond Ray's retries: new actor, case back in the queue
                    self.actors.remove(actor)
                    fresh = self._new_actor()
                    self.actors.append(fresh)
                    idle.append(fresh)
                    cid = task.spec.case_id
                    crashes[cid] = crashes.get(cid, 0) + 1
                    if crashes[cid] >= MAX_CRASHES:
                        on_result({"kind": "case", "case_id": cid, "path": task.spec.path, "state": FAILED,
                                   "error": CRASH_ERROR, **self.identity})
                    else:
                        queue.append(task)

    def close(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self._started_here:
            ray.shutdown()
