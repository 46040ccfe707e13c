"""Drives a :class:`TextSegPanel` with a :class:`TextSegLogic`: run, poll, cancel, undo.

The engine runs in the engine process (or on a remote server); a QTimer on the
main thread advances the job with short polls, updates the progress bar and,
when the job ends, lets the logic import the masks (MRML is only touched here,
on the main thread). Nothing here blocks the GUI: the run, "Test connection"
and downloads advance in short non-blocking steps from timer ticks, with no
Python thread (docs/slicer-seams-gui.md).
"""
from __future__ import annotations

from typing import Any, Callable

from TextSegLib.errors import CancelledError, ModalityError, ModelError, TextSegError
from TextSegLogicLib import engines, licences
from TextSegLogicLib.downloads import ModelDownload
from TextSegLogicLib.job import SceneJob
from TextSegLogicLib.prompts import AmbiguousPromptError, UnknownTermError, resolve_for
from TextSegLogicLib.logic import TextSegLogic
from TextSegLogicLib.settings import AskConsent, TextSegSettings, ensure_upload_consent

from . import qt_compat as qc
from .pacs_controller import PacsController
from .panel import TextSegPanel

POLL_MS = 100
CONNECTION_TIMEOUT_S = 10.0
CONNECTION_STEP_S = 0.01  # the most one timer tick spends on the connection test


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
        self.job: SceneJob | None = None
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
        panel.engine_python_edit.setText(self.settings.engine_python)
        panel.device_combo.currentIndexChanged.connect(self._save_settings)
        panel.model_dir_edit.editingFinished.connect(self._save_settings)
        panel.engine_python_edit.editingFinished.connect(self._save_settings)
        panel.model_combo.currentIndexChanged.connect(self._model_changed)
        panel.on_download = self.download
        self.download_job: ModelDownload | None = None
        self.ask_licence: licences.AskLicence | None = None  # the Slicer widget shows a dialog
        self.default_python = ""  # the engine's interpreter when Settings name none (Slicer: PythonSlicer)
        self._connection_probe: tuple[Any, str] | None = None  # (stepped probe, url) of "Test connection"
        self.aux_timer = qc.QtCore.QTimer(panel)
        self.aux_timer.setInterval(POLL_MS)
        self.aux_timer.timeout.connect(self._poll_aux)
        if panel.suggest is None:
            from TextSegLogicLib.completion import make_suggester

            panel.suggest = make_suggester(self.model_terms)
        self.refresh_models()
        panel.on_place = place
        panel.on_refine = self.refine
        panel.on_export = self.export
        refine_ok, reason = _refine_available()
        if refine_ok and (place is None or refine_inputs is None):
            refine_ok, reason = False, "Placing points and boxes needs Slicer's markups (run inside 3D Slicer)."
        panel.set_refinement_available(refine_ok, reason)
        self.pacs = PacsController(panel, logic, volume_node, segmentation_node, self.settings.store)  # Send to PACS
        self.volume_changed()
        self._setup_batch()

    def _setup_batch(self) -> None:
        """The Batch section's controller (:mod:`.batch_controller`): ``self.batch`` (None where the
        cohort runner cannot be imported, e.g. no ``fcntl`` on Windows; the section is then disabled)."""
        try:
            from .batch_controller import BatchController
        except ImportError as exc:
            self.batch = None
            self.panel.batch_section.setEnabled(False)
            self.panel.batch_section.setToolTip(f"Batch runs are not available in this build ({exc}).")
            return
        self.batch = BatchController(self)

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
        self.settings.engine_python = qc.text(self.panel.engine_python_edit)
        if self._engine_key != "injected":
            self._engine_key = None  # the next run uses the new settings
        self.refresh_models()

    # -- models ------------------------------------------------------------------------
    def refresh_models(self) -> dict[str, tuple[bool, str]]:
        """Recompute which models are usable (after a dependency install, a download, a new folder)."""
        model_dir = qc.text(self.panel.model_dir_edit)
        selected = self._selected_model()
        availability = {k: engines.available(k, model_dir if k == selected else "") for k in engines.CHOICES}
        self.panel.set_model_availability(availability)
        self._model_changed()
        return availability

    def _model_changed(self, *_: Any) -> None:
        key = self._selected_model()
        ok, reason = engines.available(key, qc.text(self.panel.model_dir_edit))
        downloading = self.download_job is not None and self.download_job.state == "running"
        self.panel.download_button.setVisible(key in engines.DOWNLOADABLE and (not ok or downloading))
        if not downloading:
            self.panel.download_button.setText("Download")
            self.panel.download_label.setText(licences.selector_line(key, ok, reason))

    def model_terms(self, modality: str) -> list[str]:
        """The selected model's own terms for ``modality`` (the completer marks them)."""
        key = self._selected_model()
        try:
            if self._engine_key == "injected" and self.logic.loaded_engine is not None:
                return list(self.logic.loaded_engine.vocabulary(modality or "ct"))
            if key == "remote":
                return []
            return engines.describe(key, qc.text(self.panel.model_dir_edit)).vocabulary(modality or "ct")
        except TextSegError:
            return []

    def download(self, key: str) -> None:
        """Download button: start (or cancel) ``textseg models pull``; a licence to accept is asked first, once."""
        if self.download_job is not None and self.download_job.state == "running":
            self.download_job.cancel()
            self.panel.download_label.setText("Download cancelled.")
            self.panel.download_button.setText("Download")
            return
        name = engines.CHOICES.get(key, ("", None))[1]
        if not name or key not in engines.DOWNLOADABLE:
            return
        if not licences.ensure_licence(key, self.ask_licence):
            self.panel.download_label.setText(licences.REFUSED.format(name=name) + " " + licences.notice(key))
            return
        self.download_job = ModelDownload(str(name), python=self.settings.engine_python or self.default_python)
        self.panel.download_button.setText("Cancel download")
        self.panel.download_label.setText(f"Downloading {name} ...")
        self.aux_timer.start()

    def _poll_aux(self) -> None:
        """Timer slot for the download and the connection test (never blocks)."""
        busy = False
        if self.download_job is not None:
            state, message = self.download_job.poll()
            if state == "running":
                busy = True
                self.panel.download_label.setText(message)
            elif state in ("done", "failed"):
                self.panel.download_label.setText(message)
                self.panel.download_button.setText("Download")
                self.download_job = None
                if state == "done":
                    self.refresh_models()
        if self._connection_probe is not None and self._step_connection():
            busy = True
        if not busy:
            self.aux_timer.stop()

    def volume_changed(self, *_: Any) -> None:
        """Selector slot: show the modality guessed for the new volume."""
        node = self.volume_node()
        if hasattr(self, "pacs"):
            self.pacs.refresh()
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
        """Point the logic at the selected model (it runs in the engine process, or remotely)."""
        if self._engine_key == "injected":
            return  # the logic was given an engine (scripts, tests)
        key = self._selected_model()
        model_dir = qc.text(self.panel.model_dir_edit)
        ok, reason = engines.available(key, model_dir)
        if not ok:
            raise ModelError(reason)
        if key == "remote":
            url = qc.current_text(self.panel.server_combo)
            if self.ask_consent is None or not ensure_upload_consent(self.settings, url, self.ask_consent):
                raise TextSegError(f"Upload to {url} not allowed.", "Confirm the upload, or choose a local model.")
            self.logic.use_model(key, url=url, api_key=qc.text(self.panel.api_key_edit))
        else:
            self.logic.use_model(key, device=str(qc.current_data(self.panel.device_combo)), model_dir=model_dir,
                                 python=self.settings.engine_python or self.default_python)
        self._engine_key = key

    def scene_closed(self) -> None:
        """The scene was closed: cancel the run and reset what referred to its nodes."""
        if self.job is not None and not self.job.is_final:
            self.job.request_cancel()
        self.timer.stop()
        self.job = None
        self.panel.set_running(False)
        self.panel.undo_button.setEnabled(False)
        self.panel.export_button.setEnabled(False)
        self.pacs.refresh()
        self.panel.set_refine_segments([])
        self.panel.show_results([])
        self.panel.status_label.setText("Ready.")

    # -- actions ---------------------------------------------------------------------
    def run(self, prompts: list[str]) -> SceneJob | None:
        """Start a job (the Segment button / Ctrl+Enter)."""
        if self.job is not None and not self.job.is_final:
            return self.job
        self.last_error = None
        try:
            self._ensure_engine()
            self.job = self.logic.start(self.volume_node(), prompts, self.segmentation_node(), self.modality())
        except AmbiguousPromptError as exc:
            self.last_error = exc
            self.panel.show_finished(str(exc), ok=False)
            self.panel.show_completer([c.name for c in exc.candidates], str(exc), target=exc.text)
            return None
        except TextSegError as exc:
            self.last_error = exc
            self.panel.show_finished(str(exc), ok=False)
            return None
        self.panel.set_running(True)
        self.timer.start()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_cancel()

    def poll(self) -> None:
        """Timer slot: advance the job one short step; when it ended, import on this (main) thread."""
        job = self.job
        if job is None:
            self.timer.stop()
            return
        state = job.poll()
        if state.status in ("queued", "running"):
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
        t = job.stage_s
        segmentation = seg.GetSegmentation()
        not_found = "".join(f" {name}: not found ({why})." for name, why in job.not_found.items())
        self.panel.show_finished(
            f"{len(job.imported_segment_ids)} segment(s) in {t.get('engine', 0):.1f} s "
            f"(+{t.get('import_', 0):.2f} s import) with {job.engine_name or '?'}." + not_found
            + (f" {job.review_line()}" if getattr(job, "uncertain", None) else "")  # "1 uncertain: review Liver ? (0.55)."
            + (f" {job.notice}." if getattr(job, "notice", "") else "")  # e.g. written into a new segmentation
        )
        self.panel.show_results(job.measurements)
        self.panel.undo_button.setEnabled(True)
        self.panel.export_button.setEnabled(True)
        self.pacs.refresh()
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
        if path.lower().endswith((".nii", ".nii.gz")):
            self._export_nifti(node, path)
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

    def _export_nifti(self, node: Any, path: str) -> None:
        """NIfTI label map(s) + ``<name>_labels.csv`` (TextSegLib.io.write_nifti_labels; never overwrites)."""
        from TextSegLib.io import write_nifti_labels
        from TextSegLogicLib.dicom_export import segmentation_from_node

        volume = self.volume_node()
        if volume is None:
            self.panel.status_label.setText("Select the volume the segmentation belongs to, then export again.")
            return
        try:
            written = write_nifti_labels(segmentation_from_node(self.logic, volume, node), path)
        except TextSegError as exc:
            self.panel.status_label.setText(str(exc))
            return
        self.panel.status_label.setText(f"Saved {', '.join(str(p) for p in written)}")

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
        """Test connection button: a non-blocking probe stepped by the timer (no thread: under
        PythonQt a Python thread only runs while the main thread runs Python)."""
        if self.test_connection is None:
            self.panel.status_label.setText("Remote server support is not installed (TextSegLib.remote).")
            return
        if self._connection_probe is not None:
            return
        self.panel.status_label.setText(f"Connecting to {url} ...")
        self.panel.test_connection_button.setEnabled(False)
        stepped = getattr(self.test_connection, "stepped", None)  # TextSegLib.remote.test_connection has one
        try:
            probe: Any = stepped(url, api_key or None, CONNECTION_TIMEOUT_S) if stepped is not None \
                else _Blocking(self.test_connection, url, api_key)
        except Exception as exc:  # noqa: BLE001 - shown as one line
            probe = _Blocking(lambda *_: (False, f"Connection test failed: {exc}"), url, api_key)
        self._connection_probe = (probe, url)
        self.aux_timer.start()  # the first step runs on the next tick

    def _step_connection(self) -> bool:
        """Step the connection probe (bounded); True while it still runs."""
        probe, url = self._connection_probe  # type: ignore[misc]
        try:
            out = probe.step(CONNECTION_STEP_S)
        except Exception as exc:  # noqa: BLE001 - shown as one line
            out = (False, f"Connection test failed: {exc}")
        if out is None:
            return True
        self._connection_probe = None
        ok, message = out
        if ok:
            self.panel.set_server_history(self.settings.remember_server(url))
        self.panel.status_label.setText(message)
        self.panel.test_connection_button.setEnabled(True)
        return False

    def _check_vocabulary(self, prompts: list[str]) -> None:
        """Hints for finished prompts: ambiguous, not a term of this model, or another modality."""
        finished = prompts if qc.plain_text(self.panel.prompt_edit).rstrip().endswith((",", ";")) else prompts[:-1]
        if not finished or self._selected_model() == "remote" and self._engine_key != "injected":
            self.panel.set_vocabulary_hint({})
            return
        try:
            engine = self.logic.loaded_engine if self._engine_key == "injected" else \
                engines.describe(self._selected_model(), qc.text(self.panel.model_dir_edit))
            if engine is None:
                return
            resolved = resolve_for(engine, finished, self.modality() or "ct")
        except (AmbiguousPromptError, UnknownTermError, ModalityError) as exc:
            self.panel.hint_label.setText(str(exc))
            return
        except TextSegError:
            return
        self.panel.set_vocabulary_hint({p.text: [c.name for c in p.nearest] for p in resolved if not p.in_vocabulary})


class _Blocking:
    """An injected ``test_connection(url, key)`` without a stepped form (scripts, tests), called once."""

    def __init__(self, test: Callable[[str, str], tuple[bool, str]], url: str, api_key: str) -> None:
        self.call = lambda: test(url, api_key)

    def step(self, budget_s: float = 0.0) -> tuple[bool, str]:
        return self.call()


def _refine_available() -> tuple[bool, str]:
    try:
        from TextSegLib.refine import refine  # noqa: F401
    except ImportError:
        return False, "Point/box refinement needs TextSegLib.refine.refine (not in this build yet)."
    return True, ""


def restore_choices(panel: TextSegPanel, saved: dict[str, str]) -> None:
    """Set the model, modality and device combos from a parameter node's saved values."""
    for combo, key in ((panel.model_combo, "model"), (panel.modality_combo, "modality"), (panel.device_combo, "device")):
        value = saved.get(key)
        if value is None:
            continue
        index = combo.findData(value)
        if index >= 0 and index != qc.get(combo, "currentIndex"):
            combo.setCurrentIndex(index)
