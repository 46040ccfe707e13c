"""``run_batch``: plan a cohort run, skip what the manifest says is done, run the rest on a
backend, and rebuild the tables and the QC report from the manifest.

Stopping: the first SIGINT / SIGTERM lets the running case(s) finish and then stops (nothing
new starts); a second one aborts at once. Either way nothing partial is left in ``cases/`` and
a re-run carries on where this one stopped.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputFileError, OutputPathError
from ..volume import normalize_modality
from .inputs import CaseSpec, load_cases
from .manifest import DONE, FAILED, RUNNING, ManifestWriter, read_manifest
from .outputs import DEFAULT_FORMATS, check_formats, clean_partial, verify_outputs
from .plan import model_identity, plan_tables
from .progress import Progress
from .worker import CaseTask, EngineSpec

STATUS_NAME = "status.json"


@dataclass
class BatchConfig:
    """Everything one ``textseg batch`` invocation was asked to do."""

    source: str
    run_dir: str
    prompts: Sequence[str] = ()
    engine: EngineSpec = field(default_factory=EngineSpec)
    modality: str = ""
    formats: Sequence[str] = DEFAULT_FORMATS
    workers: int = 1
    ray: str | None = None
    gpus_per_worker: float | None = None
    retry_failed: bool = False
    force: bool = False
    verify: str = "size"  # or "checksum"
    thumbnails: bool = True
    progress: bool = True
    handle_signals: bool = True
    #: DICOMweb server of ``dicomweb:UID`` cases (credentials: environment or config file, never here)
    dicomweb: str | None = None
    #: refuse the run on an unknown prompt (False), or set it aside and segment the rest (True)
    skip_unknown: bool = False
    seg_type: str = "BINARY"
    #: store each case's DICOM SEG on the DICOMweb server (``dicomweb``, or the environment / config file)
    push: bool = False


@dataclass
class BatchSummary:
    run_dir: Path
    total: int = 0
    done: int = 0
    failed: int = 0
    already_done: int = 0
    not_run: int = 0
    ran: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: prompts set aside by ``skip_unknown``: text -> why
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.failed else (4 if self.skipped else 0))

    def lines(self) -> list[str]:
        out = [f"{self.total} case(s): {self.done} done ({self.already_done} already done before this run), "
               f"{self.failed} failed, {self.not_run} not run" + (" (stopped early)" if self.interrupted else "")
               + f"; {self.ran} processed in {self.seconds:.1f} s."]
        if self.skipped:
            out.append(f"  skipped (--skip-unknown): {', '.join(self.skipped)}")
        for cid, err in self.failures[:20]:
            out.append(f"  failed: {cid}: {err}")
        if len(self.failures) > 20:
            out.append(f"  ... and {len(self.failures) - 20} more (see manifest.jsonl)")
        for name in ("report.html", "measurements.csv", "measurements.parquet", "summary.csv", "manifest.jsonl"):
            p = self.run_dir / name
            if p.exists():
                out.append(f"{name + ':':<22}{p.resolve()}")
        return out


class _Stopper:
    """First signal: stop after the running cases; second: abort now (KeyboardInterrupt)."""

    def __init__(self, install: bool, echo: Callable[[str], None]):
        self.event = threading.Event()
        self.echo, self.old = echo, {}
        if install and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        self.echo("Stopping after the running case(s) finish; press Ctrl-C again to abort them now.")

    def restore(self) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def _config_key(cfg: BatchConfig, formats: list[str], identity: dict) -> dict:
    key = {"prompts": list(cfg.prompts), "modality": cfg.modality, "formats": formats,
           "model": identity["model"], "model_version": identity["model_version"]}
    if cfg.seg_type.upper() != "BINARY":  # only when set, so runs made before the option resume
        key["seg_type"] = cfg.seg_type.upper()
    if cfg.dicomweb:
        from urllib.parse import urlsplit

        u = urlsplit(cfg.dicomweb)  # the server, without any credentials written into the URL
        key["dicomweb"] = f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}{u.path}"
    return key


def _check_same_settings(state, key: dict) -> None:
    last = next((r["config"] for r in reversed(state.runs) if r.get("config")), None)
    if last is None:
        return
    diff = [k for k in key if last.get(k) != key[k]]
    if diff:
        what = "; ".join(f"{k}: {last.get(k)!r} then, {key[k]!r} now" for k in diff)
        raise OutputPathError(f"This run folder was made with other settings ({what}).",
                              "Use a new run folder, or --force to redo every case with the new settings.")


def _select(cases: Sequence[CaseSpec], state, run_dir: Path, cfg: BatchConfig, echo) -> tuple[list[CaseSpec], int]:
    """The cases to run now, and how many are already done (verified)."""
    todo, already = [], 0
    for c in cases:
        rec = state.cases.get(c.case_id)
        st = rec.get("state") if rec else ""
        if cfg.force or not rec or st == RUNNING:
            todo.append(c)
        elif st == DONE:
            why = verify_outputs(run_dir, rec, checksum=cfg.verify == "checksum")
            if why is None:
                already += 1
            else:
                echo(f"{c.case_id}: recorded as done but {why}; running it again.")
                todo.append(c)
        elif st == FAILED:
            if cfg.retry_failed:
                todo.append(c)
        else:
            todo.append(c)
    return todo, already


def _write_status(run_dir: Path, status: dict) -> None:
    from .tables import atomic_write_bytes

    atomic_write_bytes(run_dir / STATUS_NAME, json.dumps(status, default=str).encode())


def finalize(run_dir: str | Path, cases: Sequence[CaseSpec] | None = None, settings: dict | None = None) -> dict:
    """Rebuild measurements.csv / .parquet, summary.csv and report.html from the manifest."""
    from .report import build_report
    from .tables import case_rows, mark_outliers, write_tables

    run_dir = Path(run_dir)
    state = read_manifest(run_dir)
    ids = [c.case_id for c in cases] if cases is not None else list(state.cases)
    all_rows, per_case, structures = [], [], []
    for cid in ids:
        rec = state.cases.get(cid, {"case_id": cid})
        rows, colors = [], {}
        if rec.get("state") == DONE:
            try:
                rows, colors = case_rows(run_dir, cid)
            except (OSError, ValueError):
                rows, colors = [], {}
        for r in rows:
            if r["structure"] not in structures:
                structures.append(r["structure"])
        all_rows += rows
        per_case.append({"case_id": cid, "state": rec.get("state", ""), "error": rec.get("error", ""),
                         "modality": rec.get("modality", ""), "seconds": rec.get("seconds"), "rows": rows,
                         "colors": colors})
    mark_outliers(all_rows)
    write_tables(run_dir, all_rows)
    build_report(run_dir, per_case, structures, settings=settings)
    return {"rows": len(all_rows), "cases": len(per_case)}


def make_backend(cfg: BatchConfig):
    if cfg.ray:
        from .ray import RayBackend

        return RayBackend(cfg.engine, cfg.workers, cfg.ray, cfg.gpus_per_worker)
    if cfg.workers > 1:
        from .backends import PoolBackend

        return PoolBackend(cfg.engine, cfg.workers)
    from .backends import InlineBackend

    return InlineBackend(cfg.engine)


def run_batch(cfg: BatchConfig, echo: Callable[[str], None] = print) -> BatchSummary:
    """Run (or resume) a cohort; see the module docstring."""
    t0 = time.perf_counter()
    run_dir = Path(cfg.run_dir).expanduser()
    cfg.modality = normalize_modality(cfg.modality) if cfg.modality else ""
    formats = check_formats(list(cfg.formats) + (["dicomseg"] if cfg.push else []))
    if cfg.push:  # the server must be known before any case runs
        from ..pacs import resolve_settings

        resolve_settings(cfg.dicomweb)
    listing = load_cases(cfg.source, cfg.dicomweb)
    cases = listing.cases
    from .inputs import is_dicomweb

    if any(is_dicomweb(c.path) for c in cases) and not cfg.dicomweb:
        raise InputFileError(f"{cfg.source}: lists dicomweb: series but no DICOMweb server was given.",
                             "Pass --dicomweb URL (credentials from TEXTSEG_DICOMWEB_TOKEN / _USER or the config file).")
    if not any(p.strip() for p in cfg.prompts) and any(not c.prompts for c in cases):
        from ..errors import TerminologyError

        raise TerminologyError("No prompt given" + (" (and some manifest rows name none)." if any(c.prompts for c in cases)
                                                    else "."),
                               "Give -p STRUCTURE (repeatable) or --prompts-file, or fill the manifest's prompts column.")
    summary = BatchSummary(run_dir, total=len(cases))
    if listing.ignored:
        echo(f"Ignored {len(listing.ignored)} entr{'y' if len(listing.ignored) == 1 else 'ies'} that are not scans: "
             + ", ".join(listing.ignored[:5]) + (" ..." if len(listing.ignored) > 5 else ""))
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputPathError(f"{run_dir}: is a file, not a run folder.", "Give a folder name.")
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = model_identity(cfg.engine)
    key = _config_key(cfg, formats, identity)
    writer = ManifestWriter(run_dir)
    backend = None
    stopper = _Stopper(cfg.handle_signals, echo)
    try:
        clean_partial(run_dir)
        state = read_manifest(run_dir)
        if not cfg.force:
            _check_same_settings(state, key)
        todo, summary.already_done = _select(cases, state, run_dir, cfg, echo)
        if todo:
            echo(f"{len(todo)} of {len(cases)} case(s) to run ({summary.already_done} already done); "
                 f"loading {identity['model']} in {cfg.workers} worker(s)"
                 + (f" on Ray ({cfg.ray})" if cfg.ray else "") + " ...")
            backend = make_backend(cfg)
            facts = backend.start()
            tables = plan_tables(todo, cfg.prompts, cfg.modality, facts,
                                 warn=lambda s: (summary.warnings.append(s), echo(f"warning: {s}")),
                                 skip_unknown=cfg.skip_unknown)
            for table in tables.values():
                summary.skipped.update(table.set_aside)
            writer.append({"kind": "run", "config": key, "cases": len(cases), "todo": len(todo),
                           "workers": cfg.workers, "ray": cfg.ray, **identity})
            attempts = {c.case_id: int(state.cases.get(c.case_id, {}).get("attempt", 0)) + 1 for c in todo}
            tasks = [CaseTask(c, tables[tuple(c.prompts)], str(run_dir), tuple(formats), cfg.modality,
                              cfg.thumbnails, attempts[c.case_id], cfg.dicomweb or "", cfg.seg_type.upper(),
                              cfg.push) for c in todo]
            progress = Progress(len(todo), enabled=cfg.progress)
            running: dict[str, float] = {}

            def status(state_word: str) -> None:
                _write_status(run_dir, {"state": state_word, "total": len(cases), "todo": len(todo),
                                        "already_done": summary.already_done, **progress.counts(),
                                        "running": sorted(running), "eta_s": progress.eta(), "updated": time.time()})

            def on_start(task: CaseTask) -> None:
                running[task.spec.case_id] = time.time()
                writer.append({"kind": "case", "case_id": task.spec.case_id, "state": RUNNING,
                               "attempt": task.attempt, "path": task.spec.path})
                status("running")

            def on_result(rec: dict) -> None:
                running.pop(rec["case_id"], None)
                writer.append(rec)
                progress.update(rec)
                summary.ran += 1
                status("running")

            status("running")
            try:
                backend.run(tasks, on_start, on_result, stopper.event.is_set)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                progress.close()
            summary.interrupted = summary.interrupted or stopper.event.is_set()
        else:
            echo(f"All {len(cases)} case(s) already done or failed; nothing to run "
                 "(--retry-failed retries failed cases, --force redoes everything).")
        state = read_manifest(run_dir)
        for c in cases:
            st = state.state(c.case_id)
            if st == DONE:
                summary.done += 1
            elif st == FAILED:
                summary.failed += 1
                summary.failures.append((c.case_id, state.cases[c.case_id].get("error", "")))
            else:
                summary.not_run += 1
        summary.interrupted = summary.interrupted or (summary.not_run > 0 and stopper.event.is_set())
        finalize(run_dir, cases, {"prompts": list(cfg.prompts), "model": identity["model"],
                                  "model_version": identity["model_version"], "formats": formats})
        summary.seconds = time.perf_counter() - t0
        _write_status(run_dir, {"state": "interrupted" if summary.interrupted else "finished", "total": len(cases),
                                "done": summary.done, "failed": summary.failed, "remaining": summary.not_run,
                                "updated": time.time()})
    finally:
        stopper.restore()
        if backend is not None:
            backend.close()
        writer.close()
    return summary
