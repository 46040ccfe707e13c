"""The module's Batch section, Qt-free: start a cohort run over a folder, watch it, load its cases.

A batch is an ordinary ``textseg batch`` started detached by
:func:`TextSegLib.cohort.detached.start_batch`: its own process in its own session, so
closing the module (or Slicer) does not stop it, and a restarted module finds it again from
the run folder (remembered in the settings). Prompts are resolved here first, through the
same path as a single run, so a bad prompt fails before any process starts.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from TextSegLib.cohort.detached import read_progress, running_pid, start_batch, stop_batch
from TextSegLib.cohort.manifest import read_manifest
from TextSegLib.errors import InputFileError, ModelError, OutputPathError, TextSegError

from . import engines
from .prompts import ResolvedPrompt, resolve_for
from .settings import PREFIX, TextSegSettings

RUNS_KEY = PREFIX + "batchRuns"
MAX_RUNS = 10
FINISHED = ("finished", "interrupted", "stopped")


@dataclass
class BatchProgress:
    """What the progress line shows; ``state`` as :func:`read_progress` reports it."""

    state: str
    done: int = 0
    failed: int = 0
    running: int = 0
    total: int | None = None
    eta_s: float | None = None
    pid: int | None = None
    report: str | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.total is None else max(0, self.total - self.done - self.failed)

    @property
    def finished(self) -> bool:
        """The process has ended (the lock is free) and the run says how it ended."""
        return self.pid is None and self.state in FINISHED

    def line(self) -> str:
        """One line: ``running: 3 done, 1 failed, 6 remaining, about 2 min left``."""
        parts = [f"{self.done} done", f"{self.failed} failed"]
        if self.remaining is not None:
            parts.append(f"{self.remaining} remaining")
        text = f"{self.state}: " + ", ".join(parts)
        if self.state == "running" and self.eta_s is not None:
            text += f", about {_duration(self.eta_s)} left"
        return text


@dataclass
class CaseInfo:
    """One case of a run: its manifest state, its scan and its segmentation file (if written)."""

    case_id: str
    state: str
    scan: str = ""
    segmentation: str = ""
    error: str = ""
    record: dict = field(default_factory=dict, repr=False)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 90 else f"{round(s / 60)} min"


def resolve_batch_prompts(prompts: Sequence[str], model: str, model_dir: str = "",
                          modality: str = "") -> list[ResolvedPrompt]:
    """Resolve the panel's prompts for ``model`` before a batch starts (raises the prompt errors).

    Without a chosen modality a prompt must resolve for at least one modality the model knows
    (the run guesses each case's modality)."""
    if not prompts:
        raise InputFileError("No prompts for the batch.", "Type the structures to segment in the Prompts box.")
    if model not in engines.LOCAL:
        raise ModelError(f"A batch runs a local model, not {engines.CHOICES.get(model, (model,))[0]!r}.",
                         "Choose the bundled model, SAT-Nano or SAT-Pro.")
    ok, reason = engines.available(model, model_dir)
    if not ok:
        raise ModelError(reason)
    desc = engines.describe(model, model_dir)
    modalities = [modality] if modality else list(desc.modalities or ("ct",))
    first: TextSegError | None = None
    for mod in modalities:
        try:
            return resolve_for(desc, list(prompts), mod)
        except TextSegError as exc:
            first = first or exc
    assert first is not None
    raise first


def batch_args(model: str, model_dir: str = "", device: str = "auto", modality: str = "") -> list[str]:
    """The ``textseg batch`` options for the panel's model, device and modality."""
    args = ["--model-path", str(Path(model_dir).expanduser())] if model_dir else ["--model", str(engines.CHOICES[model][1])]
    args += ["--device", device or "auto", "--quiet"]
    if modality:
        args += ["--modality", modality]
    return args


def start(source: str, run_dir: str, prompts: Sequence[str], model: str, *, model_dir: str = "",
          device: str = "auto", modality: str = "", python: str = "", settings: TextSegSettings | None = None,
          extra_args: Sequence[str] = ()) -> int:
    """Check the inputs, resolve the prompts, then start the detached batch; returns its pid.

    ``python``: the interpreter the batch runs on (the Engine Python setting, else Slicer's)."""
    src = Path(source).expanduser()
    if not str(source).strip() or not src.is_dir():
        raise InputFileError(f"Batch input folder {source!r} does not exist.", "Choose a folder of scans.")
    if not str(run_dir).strip():
        raise OutputPathError("No run folder for the batch.", "Choose an empty folder, or an earlier run to resume it.")
    run = Path(run_dir).expanduser()
    if run.resolve() == src.resolve():
        raise OutputPathError(f"{run}: the run folder cannot be the input folder.", "Choose another folder.")
    if run.exists() and not run.is_dir():
        raise OutputPathError(f"{run} is a file, not a folder.", "Choose a folder for the run.")
    if running_pid(run) is not None:
        raise OutputPathError(f"{run}: a batch is already running there.", "Wait for it, or stop it first.")
    resolved = resolve_batch_prompts(prompts, model, model_dir, modality)
    args = batch_args(model, model_dir, device, modality) + list(extra_args)
    pid = start_batch(src, run, [p.text for p in resolved], args, python=python or None)
    if settings is not None:
        remember_run(settings, str(run))
    return pid


def progress(run_dir: str) -> BatchProgress:
    """The run's progress from its folder (works for a batch started by an earlier session);
    ``not started`` for a folder no batch has written to yet."""
    run = Path(run_dir).expanduser()
    p = read_progress(run)
    if p["state"] == "stopped" and not (run / "status.json").is_file():
        p["state"] = "not started"  # an empty folder, or a batch still starting
    return BatchProgress(state=p["state"], done=p["done"], failed=p["failed"], running=p["running"],
                         total=p["total"], eta_s=p["eta_s"], pid=p["pid"], report=p["report"])


def stop(run_dir: str) -> bool:
    """Ask the batch to stop after its current case; False when none is running there."""
    return stop_batch(Path(run_dir).expanduser())


def recent_runs(settings: TextSegSettings) -> list[str]:
    """The remembered run folders that still exist, newest first."""
    try:
        runs = json.loads(settings.store.get(RUNS_KEY) or "[]")
    except ValueError:
        return []
    return [r for r in runs if isinstance(r, str) and Path(r).is_dir()]


def remember_run(settings: TextSegSettings, run_dir: str) -> list[str]:
    """Put ``run_dir`` first in the remembered run folders (at most 10)."""
    run = os.path.abspath(os.path.expanduser(run_dir))
    runs = [run] + [r for r in recent_runs(settings) if r != run]
    settings.store[RUNS_KEY] = json.dumps(runs[:MAX_RUNS])
    return runs[:MAX_RUNS]


def report_url(run_dir: str) -> str:
    """The ``file://`` URL of the run's QC report (raises when it has not been written yet)."""
    report = Path(run_dir).expanduser().resolve() / "report.html"
    if not report.is_file():
        raise OutputPathError(f"{report} does not exist yet.", "The report is written when the batch ends.")
    return report.as_uri()


def list_cases(run_dir: str) -> list[CaseInfo]:
    """The run's cases in manifest order with their state (done, failed, running)."""
    run = Path(run_dir).expanduser()
    out = []
    for case_id, rec in read_manifest(run).cases.items():
        seg = run / "cases" / case_id / f"{case_id}.seg.nrrd"
        out.append(CaseInfo(case_id, str(rec.get("state", "")), str(rec.get("path", "")),
                            str(seg) if seg.is_file() else "", str(rec.get("error", "")), rec))
    return out


def load_case(run_dir: str, case_id: str, load_volume: Callable[[str], Any] | None = None,
              load_segmentation: Callable[[str], Any] | None = None) -> tuple[Any, Any]:
    """Load a finished case into the scene: its scan as a volume node and its ``.seg.nrrd`` as a
    segmentation node (names, colours, terminology as written). Returns ``(volume, segmentation)``.

    The loaders default to ``slicer.util.loadVolume`` / ``loadSegmentation``; tests pass
    slicer-core equivalents."""
    case = next((c for c in list_cases(run_dir) if c.case_id == case_id), None)
    if case is None:
        raise InputFileError(f"{run_dir}: no case {case_id!r} in this run.", "Pick a case from the list.")
    if case.state != "done" or not case.segmentation:
        why = f" ({case.error})" if case.error else ""
        raise InputFileError(f"Case {case_id!r} is {case.state or 'not run'}{why}; it has no segmentation to load.",
                             "Pick a case marked done.")
    if not case.scan or not Path(case.scan).is_file():
        raise InputFileError(f"Case {case_id!r}: its scan {case.scan!r} is not a readable file here (moved, or a "
                             "DICOM series folder).", "Load the scan through the DICOM module, then the .seg.nrrd.")
    if load_volume is None or load_segmentation is None:
        import slicer  # the real application

        load_volume = load_volume or slicer.util.loadVolume
        load_segmentation = load_segmentation or slicer.util.loadSegmentation
    volume = load_volume(case.scan)
    if volume is None:
        raise InputFileError(f"{case.scan}: Slicer could not read this scan.", "Check the file.")
    volume.SetName(case_id)
    seg = load_segmentation(case.segmentation)
    if seg is None:
        raise InputFileError(f"{case.segmentation}: Slicer could not read this segmentation.", "Check the file.")
    seg.SetName(f"{case_id} segmentation")
    seg.SetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole(), volume.GetID())
    return volume, seg
