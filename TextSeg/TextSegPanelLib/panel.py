"""The TextSeg panel in plain Qt widgets (no MRML): the same code runs in Slicer and in tests.

Slicer-specific selectors (qMRMLNodeComboBox) are put into the panel's
``volume_slot`` / ``segmentation_slot`` by the Slicer widget; elsewhere plain
combo boxes stand in. The panel reports user actions through plain Python
callbacks (``on_run``, ``on_cancel``, ...) set by its controller.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from TextSegLogicLib.completion import Suggester, Suggestion, current_fragment, replace_fragment
from TextSegLogicLib.engines import CHOICES, DEFAULT_CHOICE, default_choice
from TextSegLogicLib.licences import licence_line
from TextSegLogicLib.prompts import parse_prompts

from . import qt_compat as qc
from .qt_compat import QtGui, QtWidgets
from .pacs_panel import build_pacs_settings, build_send_button

DEVICES = ("auto", "cuda", "mps", "cpu")


def cpu_note(model: str, device: str) -> str:
    """What CPU means for the chosen model (README performance: the demo 14-22 s, one SAT-Nano tile 7 min on 2 cores)."""
    if device != "cpu" or model == "remote":
        return ""
    if model == "bundled":
        return "CPU: fine for the bundled model (the sample CT takes under 30 s)."
    return "CPU: slow for SAT (minutes per tile, a scan has several); prefer CUDA or MPS."
MODALITIES = (("Auto", ""), ("CT", "ct"), ("MRI", "mri"), ("PET", "pet"))


def _section(title: str) -> tuple[Any, Any]:
    box = QtWidgets.QGroupBox(title)
    form = QtWidgets.QFormLayout(box)
    form.setContentsMargins(8, 6, 8, 6)
    return box, form


class TextSegPanel(QtWidgets.QWidget):
    """Inputs, prompt box with completer, run/progress, output, refinement and settings."""

    def __init__(self, suggest: Suggester | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.suggest: Suggester | None = suggest
        self.modality_hint: Callable[[], str] = lambda: ""
        self.on_run: Callable[[list[str]], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        self.on_test_connection: Callable[[str, str], None] | None = None
        self.on_undo: Callable[[], None] | None = None
        self.on_show_3d: Callable[[bool], None] | None = None
        self.on_prompts_changed: Callable[[list[str]], None] | None = None
        self.on_place: Callable[[str, bool], None] | None = None
        self.on_export: Callable[[str], None] | None = None
        self.on_refine: Callable[[str], None] | None = None
        self.on_refine_live: Callable[[str, bool], None] | None = None  # (segment ID, on)
        self.on_redo: Callable[[], None] | None = None
        self.on_download: Callable[[str], None] | None = None
        self.on_model_changed: Callable[[str], None] | None = None
        self.running = False
        self._suggestions: list[Suggestion] = []
        self._build()

    # -- construction -----------------------------------------------------------
    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        box, form = _section("Inputs")
        self.volume_slot = QtWidgets.QHBoxLayout()
        self.volume_combo = QtWidgets.QComboBox()
        self.volume_combo.setObjectName("volumeCombo")
        self.volume_slot.addWidget(self.volume_combo)
        form.addRow("Volume:", self.volume_slot)
        self.modality_combo = QtWidgets.QComboBox()
        self.modality_combo.setObjectName("modalityCombo")
        for label, key in MODALITIES:
            self.modality_combo.addItem(label, key)
        self.modality_combo.setToolTip("Auto: guessed from the DICOM Modality tag or the intensities.")
        form.addRow("Modality:", self.modality_combo)
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.setObjectName("modelCombo")
        for key, (label, _name) in CHOICES.items():
            self.model_combo.addItem(label, key)
        self.model_combo.setCurrentIndex(self.model_combo.findData(DEFAULT_CHOICE))
        self._model_chosen = False
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(self._on_device_changed)
        form.addRow("Model:", self.model_combo)
        row = QtWidgets.QHBoxLayout()
        self.download_button = QtWidgets.QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.download_button.setToolTip("Download the selected model's weights (or set a Model folder under Settings).")
        self.download_button.clicked.connect(lambda: self.on_download and self.on_download(str(qc.current_data(self.model_combo))))
        self.download_button.hide()
        self.download_label = QtWidgets.QLabel("")
        self.download_label.setObjectName("downloadLabel")
        self.download_label.setWordWrap(True)
        row.addWidget(self.download_button)
        row.addWidget(self.download_label, 1)
        form.addRow(row)
        layout.addWidget(box)

        box, form = _section("Prompts")
        self.prompt_edit = QtWidgets.QPlainTextEdit()
        self.prompt_edit.setObjectName("promptEdit")
        self.prompt_edit.setPlaceholderText("Structures to segment, separated by commas or new lines\ne.g. liver, left kidney, spleen")
        self.prompt_edit.setMaximumHeight(80)
        self.prompt_edit.textChanged.connect(self._on_text_changed)
        form.addRow(self.prompt_edit)
        self.suggestion_list = QtWidgets.QListWidget()
        self.suggestion_list.setObjectName("suggestionList")
        self.suggestion_list.setMaximumHeight(90)
        self.suggestion_list.setHorizontalScrollBarPolicy(qc.Qt.ScrollBarAlwaysOff)
        self.suggestion_list.setToolTip("Click a suggestion (or select it and press Enter) to use it.")
        self.suggestion_list.itemActivated.connect(self._on_suggestion_activated)
        self.suggestion_list.itemClicked.connect(self._on_suggestion_activated)
        self.suggestion_list.hide()
        form.addRow(self.suggestion_list)
        self.hint_label = QtWidgets.QLabel("")
        self.hint_label.setObjectName("hintLabel")
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("color: #b06000;")
        form.addRow(self.hint_label)
        layout.addWidget(box)

        box, form = _section("Run")
        self.segment_button = QtWidgets.QPushButton("Segment")
        self.segment_button.setObjectName("segmentButton")
        self.segment_button.setToolTip("Segment every prompt (Ctrl+Enter).")
        self.segment_button.setMinimumHeight(30)
        self.segment_button.clicked.connect(self._on_segment_clicked)
        form.addRow(self.segment_button)
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Idle")
        form.addRow(self.progress_bar)
        self.status_label = QtWidgets.QLabel("Ready.")
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        form.addRow(self.status_label)
        self.results_table = QtWidgets.QTableWidget(0, 7)
        self.results_table.setObjectName("resultsTable")
        self.results_table.setHorizontalHeaderLabels(["Segment", "Volume (mL)", "Voxels", "Mean", "Std", "Min", "Max"])
        self.results_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.results_table.setMaximumHeight(140)
        self.results_table.hide()
        form.addRow(self.results_table)
        layout.addWidget(box)

        box, form = _section("Output")
        self.segmentation_slot = QtWidgets.QHBoxLayout()
        self.segmentation_combo = QtWidgets.QComboBox()
        self.segmentation_combo.setObjectName("segmentationCombo")
        self.segmentation_combo.addItem("Create new segmentation")
        self.segmentation_slot.addWidget(self.segmentation_combo)
        form.addRow("Segmentation:", self.segmentation_slot)
        row = QtWidgets.QHBoxLayout()
        self.show3d_button = QtWidgets.QPushButton("Show 3D")
        self.show3d_button.setObjectName("show3DButton")
        self.show3d_button.setCheckable(True)
        self.show3d_button.toggled.connect(lambda on: self.on_show_3d and self.on_show_3d(bool(on)))
        self.undo_button = QtWidgets.QPushButton("Undo run")
        self.undo_button.setObjectName("undoButton")
        self.undo_button.setEnabled(False)
        self.undo_button.setToolTip("Restore the segmentation as it was before the last TextSeg run.")
        self.undo_button.clicked.connect(lambda: self.on_undo and self.on_undo())
        self.export_button = QtWidgets.QPushButton("Export...")
        self.export_button.setObjectName("exportButton")
        self.export_button.setEnabled(False)
        self.export_button.setToolTip("Save the segmentation as .seg.nrrd, NIfTI + labels.csv or DICOM SEG (available after a run).")
        self.export_button.clicked.connect(self._on_export)
        for b in (self.show3d_button, self.undo_button, self.export_button):
            row.addWidget(b)
        build_send_button(self, row)  # "Send to PACS" (pacs_panel.py)
        form.addRow(row)
        layout.addWidget(box)

        self._build_refinement(layout)
        self._build_batch(layout)
        self._build_settings(layout)
        build_pacs_settings(self, layout)  # "PACS (DICOMweb)" settings (pacs_panel.py)
        layout.addStretch(1)

        self.run_shortcut = qc.QShortcut(qc.QKeySequence("Ctrl+Return"), self)
        self.run_shortcut.setContext(qc.Qt.WidgetWithChildrenShortcut)
        self.run_shortcut.activated.connect(self._on_segment_clicked)
        self.run_shortcut_enter = qc.QShortcut(qc.QKeySequence("Ctrl+Enter"), self)
        self.run_shortcut_enter.setContext(qc.Qt.WidgetWithChildrenShortcut)
        self.run_shortcut_enter.activated.connect(self._on_segment_clicked)

    def _build_refinement(self, layout: Any) -> None:
        box, form = _section("Refine")
        self.refine_box = box
        self.refine_segment_combo = QtWidgets.QComboBox()
        self.refine_segment_combo.setObjectName("refineSegmentCombo")
        form.addRow("Segment:", self.refine_segment_combo)
        row = QtWidgets.QHBoxLayout()
        self.positive_button = QtWidgets.QPushButton("+ Points")
        self.negative_button = QtWidgets.QPushButton("\u2212 Points")
        self.box_button = QtWidgets.QPushButton("Box")
        for kind, b in (("positive", self.positive_button), ("negative", self.negative_button), ("box", self.box_button)):
            b.setCheckable(True)
            b.toggled.connect(lambda on, k=kind: self._on_place_toggled(k, bool(on)))
            row.addWidget(b)
        form.addRow(row)
        row = QtWidgets.QHBoxLayout()
        self.refine_button = QtWidgets.QPushButton("Refine")
        self.refine_button.setObjectName("refineButton")
        self.refine_button.clicked.connect(lambda: self.on_refine and self.on_refine(qc.current_data(self.refine_segment_combo)))
        self.refine_undo_button = QtWidgets.QPushButton("Undo refine")
        self.refine_undo_button.clicked.connect(lambda: self.on_undo and self.on_undo())
        self.refine_redo_button = QtWidgets.QPushButton("Redo")
        self.refine_redo_button.clicked.connect(lambda: self.on_redo and self.on_redo())
        row.addWidget(self.refine_button)
        row.addWidget(self.refine_undo_button)
        row.addWidget(self.refine_redo_button)
        form.addRow(row)
        self.refine_live_check = QtWidgets.QCheckBox("Refine on each click")
        self.refine_live_check.setObjectName("refineLiveCheck")
        self.refine_live_check.setToolTip("Apply every placed point at once (no Refine button needed).")
        self.refine_live_check.toggled.connect(
            lambda on: self.on_refine_live and self.on_refine_live(qc.current_data(self.refine_segment_combo), bool(on)))
        form.addRow(self.refine_live_check)
        layout.addWidget(box)
        self.set_refinement_available(False, "Point/box refinement needs TextSegLib.refine and Slicer's markups.")

    def _build_batch(self, layout: Any) -> None:
        """The collapsible Batch section (:mod:`.batch_section`; driven by the batch controller)."""
        from .batch_section import BatchSection

        self.batch_section = BatchSection()
        layout.addWidget(self.batch_section)

    def _on_place_toggled(self, kind: str, on: bool) -> None:
        """One placement mode at a time; tell the controller which."""
        if on:
            for k, b in (("positive", self.positive_button), ("negative", self.negative_button), ("box", self.box_button)):
                if k != kind and qc.is_checked(b):
                    b.blockSignals(True)
                    b.setChecked(False)
                    b.blockSignals(False)
        if self.on_place:
            self.on_place(kind, on)

    def set_refinement_available(self, available: bool, reason: str = "") -> None:
        """Enable the refinement hooks, or disable them with a tooltip saying what is missing."""
        widgets = (self.refine_segment_combo, self.positive_button, self.negative_button, self.box_button,
                   self.refine_button, self.refine_undo_button, self.refine_redo_button, self.refine_live_check)
        for w in widgets:
            w.setEnabled(available)
            w.setToolTip("" if available else reason)

    def set_refine_segments(self, segments: Sequence[tuple[str, str]]) -> None:
        """(name, segment ID) pairs the Refine section can work on (the last run's segments)."""
        self.refine_segment_combo.clear()
        for name, sid in segments:
            self.refine_segment_combo.addItem(name, sid)

    def _build_settings(self, layout: Any) -> None:
        box, form = _section("Settings")
        self.device_combo = QtWidgets.QComboBox()
        self.device_combo.setObjectName("deviceCombo")
        for d in DEVICES:
            self.device_combo.addItem(d, d)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        form.addRow("Device:", self.device_combo)
        self.device_warning = QtWidgets.QLabel("")
        self.device_warning.setObjectName("deviceWarning")
        self.device_warning.setWordWrap(True)
        self.device_warning.setStyleSheet("color: #b00000;")
        form.addRow(self.device_warning)
        self.server_combo = QtWidgets.QComboBox()
        self.server_combo.setObjectName("serverCombo")
        self.server_combo.setEditable(True)
        self.server_combo.setToolTip("TextSeg server URL; recent entries are remembered.")
        form.addRow("Server URL:", self.server_combo)
        self.api_key_edit = QtWidgets.QLineEdit()
        self.api_key_edit.setObjectName("apiKeyEdit")
        self.api_key_edit.setEchoMode(QtWidgets.QLineEdit.Password)
        self.api_key_edit.setPlaceholderText("optional")
        form.addRow("API key:", self.api_key_edit)
        self.test_connection_button = QtWidgets.QPushButton("Test connection")
        self.test_connection_button.setObjectName("testConnectionButton")
        self.test_connection_button.clicked.connect(self._on_test_connection)
        form.addRow(self.test_connection_button)
        self.model_dir_edit = QtWidgets.QLineEdit()
        self.model_dir_edit.setObjectName("modelDirEdit")
        self.model_dir_edit.setPlaceholderText("default cache folder")
        browse = QtWidgets.QToolButton()
        browse.setText("...")
        browse.setToolTip("Choose the folder that holds a SAT model (checkpoint and text encoder).")
        browse.clicked.connect(self._browse_model_dir)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.model_dir_edit)
        row.addWidget(browse)
        form.addRow("Model folder:", row)
        self.engine_python_edit = QtWidgets.QLineEdit()
        self.engine_python_edit.setObjectName("enginePythonEdit")
        self.engine_python_edit.setPlaceholderText("Slicer's Python")
        self.engine_python_edit.setToolTip("Python interpreter the engine process runs on (an environment with torch and "
                                           "TextSeg's requirements); empty: Slicer's own Python.")
        form.addRow("Engine Python:", self.engine_python_edit)
        layout.addWidget(box)

    # -- state shown to the user --------------------------------------------------
    def set_server_history(self, urls: Sequence[str]) -> None:
        current = qc.current_text(self.server_combo)
        self.server_combo.clear()
        for u in urls:
            self.server_combo.addItem(u)
        self.server_combo.setEditText(current or (urls[0] if urls else ""))

    def set_model_availability(self, availability: dict[str, tuple[bool, str]]) -> None:
        """Grey out model choices that this build cannot load, with the reason as tooltip."""
        model = self.model_combo.model()
        for i in range(qc.count(self.model_combo)):
            key = self.model_combo.itemData(i)
            ok, reason = availability.get(key, (True, ""))
            item = model.item(i) if hasattr(model, "item") else None
            if item is not None:
                item.setEnabled(ok)
            tip = "\n".join(t for t in (reason or CHOICES[key][0], licence_line(key)) if t)
            self.model_combo.setItemData(i, tip, qc.Qt.ToolTipRole)
        current = qc.current_data(self.model_combo)
        if not availability.get(current, (True, ""))[0] or (current == "remote" and not self._model_chosen):
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(default_choice(availability))))

    def _on_model_activated(self, *_: Any) -> None:
        self._model_chosen = True  # the user picked it: refreshes no longer move the selection

    def show_results(self, rows: Sequence[Any]) -> None:
        """One row per prompt (``TextSegLib.measurements.Measurement``): mL, voxels, mean/std/min/max;
        an uncertain one is named with " ?" like its segment."""
        self.results_table.setRowCount(0)
        for m in rows:
            r = qc.count_rows(self.results_table)
            self.results_table.insertRow(r)
            if m.found:
                unsure = getattr(m, "presence_state", "") == "uncertain"  # named like its segment: "Liver ?"
                cells = [m.name + (" ?" if unsure else ""), f"{m.volume_ml:.1f}", str(m.voxels)] + [
                    "" if v is None else f"{v:.1f}" for v in (m.mean, m.std, m.min, m.max)]
            else:
                cells = [m.name, "not found", "", m.reason, "", "", ""]
            for c, text in enumerate(cells):
                self.results_table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        self.results_table.setVisible(bool(rows))

    def show_completer(self, names: Sequence[str], message: str, target: str = "") -> None:
        """List candidate terms for the ambiguous prompt ``target`` (picking one replaces it)."""
        from TextSegLogicLib.completion import Suggestion

        self._replace_target = target

        self._suggestions = [Suggestion(n) for n in names]
        self.suggestion_list.clear()
        for sug in self._suggestions:
            self.suggestion_list.addItem(QtWidgets.QListWidgetItem(sug.display()))
        self.suggestion_list.setVisible(bool(self._suggestions))
        self.status_label.setText(message)

    def _on_export(self) -> None:
        path = qc.save_file_name(self, "Save segmentation", "Segmentation (*.seg.nrrd);;NIfTI + labels.csv (*.nii.gz);;DICOM SEG (*.dcm)")
        if path and self.on_export:
            self.on_export(str(path))

    def _browse_model_dir(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "SAT model folder", qc.text(self.model_dir_edit))
        if folder:
            self.model_dir_edit.setText(folder)

    def _on_device_changed(self, *_: Any) -> None:
        self.device_warning.setText(cpu_note(str(qc.current_data(self.model_combo)), str(qc.current_data(self.device_combo))))

    def show_modality_guess(self, modality: str, reason: str) -> None:
        """Label the 'Auto' modality entry with the current guess, e.g. 'Auto (CT)'."""
        label = dict((k, lbl) for lbl, k in MODALITIES).get(modality, "")
        self.modality_combo.setItemText(0, f"Auto ({label})" if label else "Auto")
        self.modality_combo.setItemData(0, f"Guessed: {reason}" if reason else "", qc.Qt.ToolTipRole)

    def prompts(self) -> list[str]:
        return parse_prompts(qc.plain_text(self.prompt_edit))

    def set_vocabulary_hint(self, unknown: dict[str, list[str]]) -> None:
        """Show 'not a trained term' for prompts outside the model's vocabulary."""
        if not unknown:
            self.hint_label.setText("")
            return
        lines = []
        for p, nearest in unknown.items():
            tail = f" Did you mean: {', '.join(nearest)}?" if nearest else ""
            lines.append(f"\u201c{p}\u201d is not a trained term of this model.{tail}")
        self.hint_label.setText("\n".join(lines))

    # -- completer ----------------------------------------------------------------
    def _on_text_changed(self) -> None:
        fragment = current_fragment(qc.plain_text(self.prompt_edit))
        self._suggestions = self.suggest(fragment, self.modality_hint()) if (self.suggest and len(fragment) >= 2) else []
        self.suggestion_list.clear()
        for s in self._suggestions:
            item = QtWidgets.QListWidgetItem(s.display())
            item.setToolTip("\n".join(x for x in (s.preferred, s.synonym, s.region, s.code) if x))
            self.suggestion_list.addItem(item)
        self.suggestion_list.setVisible(bool(self._suggestions))
        if self.on_prompts_changed:
            self.on_prompts_changed(self.prompts())

    def suggestions(self) -> list[Suggestion]:
        return list(self._suggestions)

    def pick_suggestion(self, row: int) -> None:
        """Replace the fragment being typed with suggestion ``row``'s preferred name."""
        choice = self._suggestions[row].preferred
        target, self._replace_target = getattr(self, "_replace_target", ""), ""
        text = qc.plain_text(self.prompt_edit)
        if target:
            from TextSegLib.knowledge import prompt_spans

            span = next((sp for sp in prompt_spans(text) if sp.text == target), None)
            new = text[:span.start] + choice + text[span.end:] if span is not None else replace_fragment(text, choice)
        else:
            new = replace_fragment(text, choice)
        self.prompt_edit.setPlainText(new)
        cursor = self.prompt_edit.textCursor()
        cursor.movePosition(QtGui.QTextCursor.End)
        self.prompt_edit.setTextCursor(cursor)
        self.prompt_edit.setFocus()

    def _on_suggestion_activated(self, item: Any) -> None:
        self.pick_suggestion(self.suggestion_list.row(item))

    # -- run / cancel ---------------------------------------------------------------
    def _on_segment_clicked(self) -> None:
        if self.running:
            if self.on_cancel:
                self.status_label.setText("Cancelling...")
                self.on_cancel()
        elif self.on_run:
            self.on_run(self.prompts())

    def _on_test_connection(self) -> None:
        if self.on_test_connection:
            self.on_test_connection(qc.current_text(self.server_combo), qc.text(self.api_key_edit))

    def set_running(self, running: bool) -> None:
        """Segment button becomes Cancel while a job runs."""
        self.running = running
        self.segment_button.setText("Cancel" if running else "Segment")
        self.segment_button.setToolTip("Stop after the current tile (Ctrl+Enter)." if running else "Segment every prompt (Ctrl+Enter).")
        for w in (self.prompt_edit, self.model_combo, self.modality_combo):
            w.setEnabled(not running)
        if running:
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("Starting...")

    def show_progress(self, stage: str, done: int, total: int, elapsed_s: float) -> None:
        pct = int(100 * done / total) if total else 0
        self.progress_bar.setValue(pct)
        self.progress_bar.setFormat(f"{stage} {done}/{total}" if total else stage or "...")
        self.status_label.setText(f"Running: {stage or 'starting'} ({elapsed_s:.1f} s)")

    def show_finished(self, message: str, ok: bool = True) -> None:
        self.set_running(False)
        self.progress_bar.setValue(100 if ok else 0)
        self.progress_bar.setFormat("Done" if ok else "Stopped")
        self.status_label.setText(message)
