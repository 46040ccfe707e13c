"""Drives the panel's Batch section with :mod:`TextSegLogicLib.batch`.

A 100 ms QTimer polls the run folder while a batch runs (the batch itself is a separate
process: stopping the timer, closing the module or Slicer leaves it running). The prompts,
model, modality, device and engine Python come from the main panel and settings.
"""
from __future__ import annotations

from typing import Any, Callable

from TextSegLib.errors import TextSegError
from TextSegLogicLib import batch
from TextSegLogicLib.prompts import AmbiguousPromptError

from . import qt_compat as qc

POLL_MS = 100


def _alive(pid: int) -> bool:
    """Whether the batch process this session started is still running (reaps it once ended)."""
    import os

    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # already reaped
        return False


def _open_url(url: str) -> None:
    qc.QtGui.QDesktopServices.openUrl(qc.QtCore.QUrl(url))


class BatchController:
    """Start / stop / poll / report / load for the Batch section of ``main.panel``."""

    def __init__(self, main: Any, open_url: Callable[[str], None] = _open_url) -> None:
        self.main = main  # the TextSegController: panel, settings, selected model and modality
        self.section = main.panel.batch_section
        self.open_url = open_url
        #: (load_volume, load_segmentation); None: Slicer's slicer.util loaders
        self.loaders: tuple[Callable[[str], Any], Callable[[str], Any]] | None = None
        self.on_loaded: Callable[[Any, Any], None] = lambda volume, seg: None
        self.last_error: BaseException | None = None
        self.last_progress: batch.BatchProgress | None = None
        self.pid: int | None = None  # the batch this session started, until it has ended
        self._cases_key: tuple = ()
        self.extra_args: tuple[str, ...] = ()  # more ``textseg batch`` options (tests: --threads 1)
        self.timer = qc.QtCore.QTimer(main.panel)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.section.on_start = self.start
        self.section.on_stop = self.stop
        self.section.on_open_report = self.open_report
        self.section.on_load = self.load
        self.section.on_run_changed = self.watch
        self.section.set_recent_runs(batch.recent_runs(main.settings))
        self.watch(self.section.run_folder())

    def _fail(self, exc: BaseException) -> None:
        self.last_error = exc
        self.section.progress_label.setText(str(exc))

    def start(self, source: str, run_dir: str) -> int | None:
        """Start button: resolve the prompts, start ``textseg batch`` detached, begin polling."""
        m = self.main
        self.last_error = None
        try:
            self.pid = batch.start(
                source, run_dir, m.panel.prompts(), m._selected_model(), model_dir=qc.text(m.panel.model_dir_edit),
                device=str(qc.current_data(m.panel.device_combo)), modality=str(qc.current_data(m.panel.modality_combo) or ""),
                python=m.settings.engine_python or m.default_python, settings=m.settings,
                extra_args=self.extra_args)
        except AmbiguousPromptError as exc:
            self._fail(exc)
            m.panel.show_completer([c.name for c in exc.candidates], str(exc), target=exc.text)
            return None
        except TextSegError as exc:
            self._fail(exc)
            return None
        self.section.set_recent_runs(batch.recent_runs(m.settings))
        self.section.run_combo.setEditText(batch.recent_runs(m.settings)[0])
        self.section.set_running(True)
        self.section.progress_label.setText(f"Started (process {self.pid}).")
        self.timer.start()
        return self.pid

    def watch(self, run_dir: str) -> None:
        """A run folder was chosen: show its progress and cases; poll while it runs."""
        if not run_dir:
            self.section.show_progress("No batch.", False)
            self.section.show_cases([])
            return
        self.poll(run_dir)
        if self.last_progress is not None and self.last_progress.pid is not None:
            self.timer.start()

    def poll(self, run_dir: str | None = None) -> batch.BatchProgress | None:
        """Timer slot: read the run folder and update the progress line and case list."""
        run = run_dir or self.section.run_folder()
        if not run:
            self.timer.stop()
            return None
        p = batch.progress(run)
        self.last_progress = p
        ours = self.pid is not None and p.pid is None and _alive(self.pid)
        if ours and p.state in ("not started", "stopped"):
            p.state = "starting"  # our process has not taken the folder's lock yet
        active = p.pid is not None or ours
        self.section.show_progress(p.line(), p.report is not None)
        self.section.set_running(active)
        key = (run, p.state, p.done, p.failed, p.running)
        if key != self._cases_key:  # the manifest is re-read only when the counts change
            self._cases_key = key
            self.section.show_cases(batch.list_cases(run))
        if not active:
            self.timer.stop()
            self.pid = None
        return p

    def stop(self, run_dir: str) -> None:
        """Stop button: the batch ends after its current case."""
        if batch.stop(run_dir):
            self.section.progress_label.setText("Stopping after the current case ...")
        else:
            self.section.progress_label.setText("No batch is running in this folder.")

    def open_report(self, run_dir: str) -> str | None:
        """Open report button: the QC report in the system browser."""
        try:
            url = batch.report_url(run_dir)
        except TextSegError as exc:
            self._fail(exc)
            return None
        self.open_url(url)
        return url

    def load(self, run_dir: str, case_id: str) -> tuple[Any, Any] | None:
        """Load button: the case's scan and segmentation into the scene."""
        if not case_id:
            self.section.progress_label.setText("Select a case to load.")
            return None
        try:
            volume, seg = batch.load_case(run_dir, case_id, *(self.loaders or (None, None)))
        except TextSegError as exc:
            self._fail(exc)
            return None
        self.on_loaded(volume, seg)
        self.section.progress_label.setText(f"Loaded {case_id}.")
        return volume, seg

    def close(self) -> None:
        """The module is closing: stop watching (the batch process runs on)."""
        self.timer.stop()
