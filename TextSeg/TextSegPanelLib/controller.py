"""Drives a :class:`TextSegPanel` with a :class:`TextSegLogic`: run, poll, cancel, undo.

The engine runs in the logic's worker thread; a QTimer on the main thread
polls the job, updates the progress bar and, when the job ends, lets the
logic import the masks (MRML is only touched here, on the main thread).
"""
from __future__ import annotations

from typing import Any, Callable

from TextSegLib.errors import CancelledError, ModelError, TextSegError
from TextSegLogicLib import engines, mrml_io
from TextSegLogicLib.job import Job
from TextSegLogicLib.logic import TextSegLogic
from TextSegLogicLib.settings import AskConsent, TextSegSettings, ensure_upload_consent

from . import qt_compat as qc
from .panel import TextSegPanel

POLL_MS = 100


class TextSegController:
    """Connects panel callbacks to the logic; owns the polling timer."""

    def __init__(
        self,
        panel: TextSegPanel,
        logic: TextSegLogic,
        volume_node: Callable[[], Any],
        segmentation_node: Callable[[], Any],
        set_segmentation_node: Callable[[Any], None] = lambda node: None,
        settings: TextSegSettings | None = None,
        ask_consent: AskConsent | None = None,
        test_connection: Callable[[str, str], tuple[bool, str]] | None = None,
        dicom_modality: Callable[[Any], str] = lambda node: "",
        place: Callable[[str, bool], None] | None = None,
        refine_inputs: Callable[[], tuple[list, list, list]] | None = None,
    ) -> None:
        self.panel = panel
        self.logic = logic
        self.volume_node = volume_node
        self.segmentation_node = segmentation_node
        self.set_segmentation_node = set_segmentation_node
        self.settings = settings or TextSegSettings()
        self.ask_consent = ask_consent
        self.test_connection = test_connection
        self.dicom_modality = dicom_modality
        self.refine_inputs = refine_inputs
        self.job: Job | None = None
        self._engine_key: str | None = "injected" if logic.loaded_engine is not None else None
        self.last_error: BaseException | None = None
        self.timer = qc.QtCore.QTimer(panel)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        panel.on_run = self.run
        panel.on_cancel = self.cancel
        panel.on_undo = self.undo
        panel.on_show_3d = self.show_3d
        panel.on_test_connection = self._test_connection
        panel.on_prompts_changed = self._check_vocabulary
        panel.modality_hint = self.modality
        panel.set_server_history(self.settings.server_history())
        panel.device_combo.setCurrentIndex(max(0, panel.device_combo.findData(self.settings.device)))
        panel.model_dir_edit.setText(self.settings.model_dir)
        panel.device_combo.currentIndexChanged.connect(self._save_settings)
        panel.model_dir_edit.editingFinished.connect(self._save_settings)
        panel.set_model_availability({k: engines.available(k) for k in engines.CHOICES})
        panel.on_place = place
        panel.on_refine = self.refine
        panel.on_export = self.export
        refine_ok, reason = _refine_available()
        if refine_ok and (place is None or refine_inputs is None):
            refine_ok, reason = False, "Placing points and boxes needs Slicer's markups (run inside 3D Slicer)."
        panel.set_refinement_available(refine_ok, reason)
        self.volume_changed()

    # -- inputs ---------------------------------------------------------------------
    def modality(self) -> str:
        chosen = qc.current_data(self.panel.modality_combo)
        if chosen:
            return str(chosen)
        node = self.volume_node()
        if node is None:
            return ""
        return self.logic.guess_modality(node, self.dicom_modality(node))

    def _save_settings(self, *_: Any) -> None:
        self.settings.device = str(qc.current_data(self.panel.device_combo))
        self.settings.model_dir = qc.text(self.panel.model_dir_edit)
        if self._engine_key != "injected":
            self._engine_key = None  # the next run rebuilds the engine with the new settings

    def volume_changed(self, *_: Any) -> None:
        """Selector slot: show the modality guessed for the new volume."""
        node = self.volume_node()
        if node is None:
            self.panel.show_modality_guess("", "")
            return
        try:
            self.panel.show_modality_guess(*self.logic.guess_modality_reason(node, self.dicom_modality(node)))
        except TextSegError as exc:
            self.panel.show_modality_guess("", str(exc))

    def _selected_model(self) -> str:
        return str(qc.current_data(self.panel.model_combo))

    def _ensure_engine(self) -> None:
        """Point the logic at the selected model; the job loads it in its worker thread."""
        if self._engine_key == "injected":
            return  # the logic was given an engine (scripts, tests)
        key = self._selected_model()
        if self._engine_key == key and (self.logic.loaded_engine is not None or self.logic.engine_factory is not None):
            return
        ok, reason = engines.available(key)
        if not ok:
            raise ModelError(reason)
        settings: dict[str, Any] = {"device": qc.current_data(self.panel.device_combo), "model_dir": qc.text(self.panel.model_dir_edit)}
        if key == "remote":
            url = qc.current_text(self.panel.server_combo)
            if self.ask_consent is None or not ensure_upload_consent(self.settings, url, self.ask_consent):
                raise TextSegError(f"Upload to {url} not allowed.", "Confirm the upload, or choose a local model.")
            settings = {"url": url, "api_key": qc.text(self.panel.api_key_edit)}
        self.logic.set_engine(None)
        self.logic.engine_factory = lambda: engines.make_engine(key, **settings)
        self._engine_key = key

    # -- actions ---------------------------------------------------------------------
    def run(self, prompts: list[str]) -> Job | None:
        """Start a job (the Segment button / Ctrl+Enter)."""
        if self.job is not None and not self.job.done:
            return self.job
        self.last_error = None
        try:
            self._ensure_engine()
            self.job = self.logic.start(self.volume_node(), prompts, self.segmentation_node(), self.modality())
        except TextSegError as exc:
            self.last_error = exc
            self.panel.show_finished(str(exc), ok=False)
            return None
        self.panel.set_running(True)
        self.timer.start()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def poll(self) -> None:
        """Timer slot: show progress; when the job ended, import on this (main) thread."""
        job = self.job
        if job is None:
            self.timer.stop()
            return
        state = job.snapshot()
        if state.status == "running":
            self.panel.show_progress(state.stage, state.done, state.total, state.elapsed_s)
            return
        self.timer.stop()
        try:
            seg = self.logic.finish(job)
        except CancelledError:
            self.panel.show_finished(f"Cancelled after {state.elapsed_s:.1f} s; the segmentation was not changed.", ok=False)
            return
        except TextSegError as exc:
            self.last_error = exc
            self.panel.show_finished(str(exc), ok=False)
            return
        self.set_segmentation_node(seg)
        t = job.timings
        segmentation = seg.GetSegmentation()
        empty = [
            segmentation.GetSegment(sid).GetName()
            for sid in job.imported_segment_ids
            if mrml_io.segment_tag(segmentation.GetSegment(sid), mrml_io.TAG_DIGEST) == "empty"
        ]
        self.panel.show_finished(
            f"{len(job.imported_segment_ids)} segment(s) in {t.get('engine', 0):.1f} s "
            f"(+{t.get('import_', 0):.2f} s import) with {job.engine.name if job.engine else '?'}."
            + (f" Nothing found for: {', '.join(empty)}." if empty else "")
        )
        self.panel.undo_button.setEnabled(True)
        self.panel.export_button.setEnabled(True)
        self.panel.set_refine_segments(
            [(segmentation.GetSegment(sid).GetName(), sid) for sid in job.imported_segment_ids if segmentation.GetSegment(sid)]
        )

    def refine(self, segment_id: str | None) -> None:
        """Refine button: apply the placed points/box to the chosen segment."""
        node, volume = self.segmentation_node(), self.volume_node()
        if not segment_id or node is None or self.refine_inputs is None:
            self.panel.status_label.setText("Run a segmentation first, then choose the segment to refine.")
            return
        positive, negative, boxes = self.refine_inputs()
        try:
            result = self.logic.refine_segment(volume, node, segment_id, positive, negative, boxes)
        except TextSegError as exc:
            self.panel.status_label.setText(str(exc))
            return
        changed = "no change" if result.changed_box is None else "segment updated"
        self.panel.status_label.setText(f"Refined ({changed}) in {result.info.get('seconds', 0):.2f} s.")
        self.panel.undo_button.setEnabled(self.logic.history.can_undo(node))

    def export(self, path: str) -> None:
        """Export button: save the output segmentation as .seg.nrrd, or DICOM SEG for a
        ``.dcm`` name (never overwriting)."""
        node = self.segmentation_node()
        if node is None:
            self.panel.status_label.setText("Nothing to export yet: run a segmentation first.")
            return
        if path.lower().endswith(".dcm"):
            self._export_dicom_seg(node, path)
            return
        if not path.endswith(".seg.nrrd"):
            path = path.rsplit(".", 1)[0] + ".seg.nrrd" if path.endswith((".nrrd", ".seg")) else path + ".seg.nrrd"
        try:
            self.logic.export_seg_nrrd(node, path)
        except TextSegError as exc:
            self.panel.status_label.setText(str(exc))
            return
        self.panel.status_label.setText(f"Saved {path}")

    def _export_dicom_seg(self, node: Any, path: str) -> None:
        from TextSegLogicLib.dicom_export import export_dicom_seg

        try:
            report = export_dicom_seg(self.logic, self.volume_node(), node, path)
        except TextSegError as exc:
            self.panel.status_label.setText(str(exc))
            return
        empty = f"; not found, left out: {', '.join(report.empty_segments)}" if report.empty_segments else ""
        self.panel.status_label.setText(f"Saved DICOM SEG {path} ({len(report.segments)} segment(s){empty})")

    def undo(self) -> None:
        node = self.segmentation_node()
        try:
            if node is not None and self.logic.undo(node):
                self.panel.status_label.setText("Undone: the segmentation is back to its previous state.")
        except TextSegError as exc:  # e.g. an undo that would overwrite a later edit
            self.panel.status_label.setText(str(exc))
        self.panel.undo_button.setEnabled(self.logic.history.can_undo(node))

    def show_3d(self, show: bool) -> None:
        node = self.segmentation_node()
        if node is not None:
            self.logic.show_3d(node, show)

    def _test_connection(self, url: str, api_key: str) -> None:
        if self.test_connection is None:
            self.panel.status_label.setText("Remote server support is not installed (TextSegLib.remote).")
            return
        ok, message = self.test_connection(url, api_key)
        if ok:
            self.panel.set_server_history(self.settings.remember_server(url))
        self.panel.status_label.setText(message)

    def _check_vocabulary(self, prompts: list[str]) -> None:
        """'Not a trained term, did you mean ...' for finished prompts outside the model's vocabulary."""
        finished = prompts if qc.plain_text(self.panel.prompt_edit).rstrip().endswith((",", ";")) else prompts[:-1]
        if self.logic.loaded_engine is None or not finished:
            self.panel.set_vocabulary_hint({})
            return
        try:
            specs = self.logic.specs(finished, self.modality() or "ct")
        except TextSegError:
            return
        self.panel.set_vocabulary_hint({s.prompt: s.nearest for s in specs if not s.in_vocabulary})


def _refine_available() -> tuple[bool, str]:
    try:
        from TextSegLib.refine import refine  # noqa: F401
    except ImportError:
        return False, "Point/box refinement needs TextSegLib.refine.refine (not in this build yet)."
    return True, ""
