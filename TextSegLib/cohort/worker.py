"""One case, start to finish, in whatever process holds the model (inline, a local worker
process or a Ray actor): read, segment, export, measure, draw, commit; return the manifest record.

A case that fails for any reason returns a ``failed`` record with a one-line error; nothing it
half-wrote survives (its staging folder is removed, ``cases/`` is untouched).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TextSegError
from .inputs import CaseSpec
from .manifest import DONE, FAILED
from .outputs import FORMATS, CaseFolder

MEASUREMENTS_JSON = "measurements.json"
THUMBNAIL = "qc.png"


@dataclass(frozen=True)
class EngineSpec:
    """How a worker loads its model (once)."""

    model: str | None = None
    model_path: str | None = None
    device: str = "cpu"
    precision: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class PromptTable:
    """A case's prompts resolved up front for each modality it may turn out to be:
    ``prompts[m]`` the resolved prompts, ``skipped[m]`` prompt text -> why it cannot be
    segmented in ``m`` (reported as not found), ``errors[m]`` why no prompt can (case fails)."""

    prompts: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    #: prompts set aside by ``--skip-unknown`` (text -> why), over all modalities
    set_aside: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CaseTask:
    spec: CaseSpec
    table: PromptTable
    run_dir: str
    formats: tuple[str, ...]
    modality: str = ""  # the run's --modality (a case's own column wins)
    thumbnails: bool = True
    attempt: int = 1
    dicomweb: str = ""  # server of a dicomweb:UID case
    seg_type: str = "BINARY"  # DICOM SEG type (BINARY or LABELMAP)
    push: bool = False  # store the case's DICOM SEG on the DICOMweb server before the case counts as done


def one_line(exc: BaseException) -> str:
    """A user-facing one-line description of an error."""
    if isinstance(exc, TextSegError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def load_worker_engine(spec: EngineSpec):
    """The engine, loaded once per worker process; torch and ITK threads limited to ``spec.threads``."""
    import torch

    from ..models.catalog import load_engine

    if spec.threads:  # every thread pool of the worker, so N workers do not oversubscribe the cores
        import SimpleITK as sitk

        n = int(spec.threads)
        torch.set_num_threads(n)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(n)
    return load_engine(spec.model, spec.model_path, device=spec.device, precision=spec.precision)


DICOMWEB_CACHE = "dicomweb-cache"


def fetch_input(task: CaseTask) -> str:
    """The case's scan on disk: its path, or a ``dicomweb:UID`` series pulled (WADO-RS, atomic,
    reused when complete) into the run folder's ``dicomweb-cache/``."""
    from .inputs import DICOMWEB_PREFIX, is_dicomweb

    if not is_dicomweb(task.spec.path):
        return task.spec.path
    from ..pacs import PacsClient, resolve_settings

    uid = task.spec.path[len(DICOMWEB_PREFIX):]
    client = PacsClient(resolve_settings(task.dicomweb or None))
    return str(client.pull_series(uid, cache=Path(task.run_dir) / DICOMWEB_CACHE))


def push_case(task: CaseTask, folder: Path, names: list[str]) -> list[str]:
    """STOW-RS the case's DICOM SEG to the run's DICOMweb server; returns the SOP Instance UIDs
    stored (``[]`` when the case made no SEG: a NIfTI input, or nothing found). A refused push
    fails the case, so a case marked done on a ``--push`` run is in the PACS."""
    if not names:
        return []
    from ..pacs import PacsClient, resolve_settings

    return list(PacsClient(resolve_settings(task.dicomweb or None)).push([folder / n for n in names]))


class CaseProcessor:
    """Holds one loaded engine and processes cases with it."""

    def __init__(self, spec: EngineSpec, engine=None, identity: dict | None = None):
        self.spec = spec
        self.engine = engine if engine is not None else load_worker_engine(spec)
        self.identity = identity or {"model": getattr(self.engine, "name", "")}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        from matplotlib import image  # noqa: F401 - the PNG writer's import, paid once per worker, not by case 1

    def run(self, task: CaseTask) -> dict:
        t0 = time.perf_counter()
        started = time.time()
        rec = {"kind": "case", "case_id": task.spec.case_id, "path": task.spec.path, "attempt": task.attempt,
               "worker": self.worker, "started": round(started, 3), **self.identity}
        folder = None
        try:
            folder = CaseFolder(Path(task.run_dir), task.spec.case_id)
            out = self._process(task, folder)
            rec.update(out)
            rec["outputs"] = folder.checksums()
            folder.commit()
            rec["state"] = DONE
        except BaseException as exc:  # noqa: BLE001 - a bad case must never stop the cohort
            if folder is not None:
                folder.discard()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            rec["state"] = FAILED
            rec["error"] = one_line(exc)
            if not isinstance(exc, TextSegError):
                rec["detail"] = traceback.format_exc(limit=6)[-2000:]
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["finished"] = round(time.time(), 3)
        return rec

    def _process(self, task: CaseTask, folder: CaseFolder) -> dict:
        from ..engine.results import plain_name, to_segmentation
        from ..io import read_volume
        from ..measurements import measure_segmentation

        timings: dict[str, float] = {}
        t = time.perf_counter()
        spec = task.spec
        volume = read_volume(fetch_input(task), modality=spec.modality or task.modality or None)
        timings["read"] = time.perf_counter() - t
        mod = volume.modality
        if mod in task.table.errors or mod not in task.table.prompts:
            name = self.identity.get("model", "the model")
            raise TextSegError(task.table.errors.get(mod) or
                               f"{spec.case_id}: {name} was not trained on {(mod or 'this kind of').upper()} scans.",
                               "Give the right modality (manifest column or --modality), or leave the case out.")
        prompts = task.table.prompts[mod]
        skipped = task.table.skipped.get(mod, {})
        t = time.perf_counter()
        result = self.engine.segment(volume, prompts, modality=mod, roi_ras=spec.roi)
        timings["segment"] = time.perf_counter() - t

        t = time.perf_counter()
        meta = {"model": self.identity.get("model", ""), "case_id": spec.case_id}
        seg = to_segmentation(volume, result, meta=meta)
        written = {}
        for name in task.formats:  # a format that does not apply (DICOM SEG of a NIfTI input) writes nothing
            extra = {"seg_type": task.seg_type} if name == "dicomseg" else {}
            written[name] = [p.name for p in FORMATS[name].write(seg, volume, folder.path, spec.case_id, **extra)]
        timings["write"] = time.perf_counter() - t
        pushed = push_case(task, folder.path, written.get("dicomseg", [])) if task.push else None

        t = time.perf_counter()
        full = to_segmentation(volume, result, include_not_found=True, meta=meta)
        found = {s.name: bool(s.meta.get("found")) for s in full}
        reasons = {s.name: str(s.meta.get("reason") or "") for s in full}
        rows = []
        # one table column per structure: the name without the uncertain mark, which ``state`` carries
        for s, m in zip(full, measure_segmentation(full, volume, found=found, reasons=reasons)):
            rows.append({"case_id": spec.case_id, "structure": plain_name(s.name), "prompt": s.meta.get("prompt", ""),
                         "concept_id": s.concept_id or "", "modality": mod, **m.row(),
                         "state": s.meta.get("presence_state") or m.presence_state,
                         "presence_probability": s.meta.get("presence_probability")})
        for text, why in skipped.items():
            rows.append({"case_id": spec.case_id, "structure": text, "prompt": text, "concept_id": "",
                         "modality": mod, "name": text, "found": False, "voxels": 0, "volume_ml": 0.0,
                         "reason": why, "state": "not found"})
        segment_colors = {s.name: tuple(s.color or (0.5, 0.5, 0.5)) for s in full}
        colors = {plain_name(n): c for n, c in segment_colors.items()}
        timings["measure"] = time.perf_counter() - t
        import json

        from ..io.volumes import atomic_replace

        tmp = folder.path / f".{MEASUREMENTS_JSON}.tmp"
        tmp.write_text(json.dumps({"case_id": spec.case_id, "rows": rows, "colors": colors}, default=str))
        atomic_replace(tmp, folder.path / MEASUREMENTS_JSON)
        if task.thumbnails:
            from ..overlay import write_thumbnails

            t = time.perf_counter()
            write_thumbnails(volume, {s.name: s.mask for s in full},  # "Spleen ?" keeps its mark in the picture
                             segment_colors, folder.path / THUMBNAIL,
                             rows=[s.name for s in full if found[s.name]])
            timings["thumbnails"] = time.perf_counter() - t
        return {"modality": mod, "shape": list(volume.shape), "formats": written,
                **({"pushed": pushed} if pushed is not None else {}),
                "structures": {"found": sum(found.values()), "not_found": len(found) - sum(found.values()) + len(skipped)},
                "timings": {k: round(v, 4) for k, v in timings.items()},
                "engine_timings": {k: round(float(v), 4) for k, v in (result.timings or {}).items()}}
