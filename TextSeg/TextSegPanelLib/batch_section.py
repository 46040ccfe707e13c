"""The panel's collapsible "Batch" section in plain Qt: input folder, run folder, Start / Stop,
a progress line, Open report, and the run's cases with Load.

It reports actions through callbacks set by :class:`~.batch_controller.BatchController`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from . import qt_compat as qc
from .qt_compat import QtWidgets

STATE_MARK = {"done": "\u2713", "failed": "\u2717", "running": "\u2026"}


class BatchSection(QtWidgets.QGroupBox):
    """Collapsible (checkable) group box; unchecked hides its contents."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__("Batch", parent)
        self.on_start: Callable[[str, str], None] | None = None  # (input folder, run folder)
        self.on_stop: Callable[[str], None] | None = None
        self.on_open_report: Callable[[str], None] | None = None
        self.on_load: Callable[[str, str], None] | None = None  # (run folder, case ID)
        self.on_run_changed: Callable[[str], None] | None = None
        self.setObjectName("batchSection")
        self.setCheckable(True)
        self.setToolTip("Segment a whole folder in a separate process (it keeps running when Slicer closes).")
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 6)
        self.body = QtWidgets.QWidget()
        outer.addWidget(self.body)
        form = QtWidgets.QFormLayout(self.body)
        form.setContentsMargins(0, 0, 0, 0)
        self._build_folders(form)
        self._build_run(form)
        self._build_cases(form)
        self.toggled.connect(self.body.setVisible)
        self.setChecked(False)
        self.body.setVisible(False)

    # -- construction -------------------------------------------------------------
    def _build_folders(self, form: Any) -> None:
        self.input_edit = QtWidgets.QLineEdit()
        self.input_edit.setObjectName("batchInputEdit")
        self.input_edit.setPlaceholderText("folder of NIfTI/NRRD scans or DICOM series folders")
        form.addRow("Input folder:", self._with_browse(self.input_edit, "Batch input folder"))
        self.run_combo = QtWidgets.QComboBox()
        self.run_combo.setObjectName("batchRunCombo")
        self.run_combo.setEditable(True)
        self.run_combo.setToolTip("Where the run writes its cases and report; earlier runs are listed "
                                  "(choose one to see its progress, or to resume it).")
        self.run_combo.currentTextChanged.connect(lambda t: self.on_run_changed and self.on_run_changed(str(t)))
        form.addRow("Run folder:", self._with_browse(self.run_combo, "Batch run folder"))

    def _build_run(self, form: Any) -> None:
        row = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start batch")
        self.start_button.setObjectName("batchStartButton")
        self.start_button.setToolTip("Segment every scan of the input folder with the prompts and model above.")
        self.start_button.clicked.connect(
            lambda: self.on_start and self.on_start(qc.text(self.input_edit).strip(), self.run_folder()))
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setObjectName("batchStopButton")
        self.stop_button.setToolTip("Stop after the current case (a later Start resumes the run).")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(lambda: self.on_stop and self.on_stop(self.run_folder()))
        self.report_button = QtWidgets.QPushButton("Open report")
        self.report_button.setObjectName("batchReportButton")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(lambda: self.on_open_report and self.on_open_report(self.run_folder()))
        for b in (self.start_button, self.stop_button, self.report_button):
            row.addWidget(b)
        form.addRow(row)
        self.progress_label = QtWidgets.QLabel("No batch.")
        self.progress_label.setObjectName("batchProgressLabel")
        self.progress_label.setWordWrap(True)
        form.addRow(self.progress_label)

    def _build_cases(self, form: Any) -> None:
        self.case_list = QtWidgets.QListWidget()
        self.case_list.setObjectName("batchCaseList")
        self.case_list.setMaximumHeight(120)
        self.case_list.itemDoubleClicked.connect(lambda *_: self._on_load())
        form.addRow(self.case_list)
        self.load_button = QtWidgets.QPushButton("Load case")
        self.load_button.setObjectName("batchLoadButton")
        self.load_button.setToolTip("Load the selected case's scan and segmentation into the scene.")
        self.load_button.clicked.connect(self._on_load)
        form.addRow(self.load_button)

    def _with_browse(self, field: Any, caption: str) -> Any:
        row = QtWidgets.QHBoxLayout()
        row.addWidget(field, 1)
        browse = QtWidgets.QToolButton()
        browse.setText("...")
        browse.clicked.connect(lambda: self._browse(field, caption))
        row.addWidget(browse)
        return row

    def _browse(self, field: Any, caption: str) -> None:
        current = qc.current_text(field) if isinstance(field, QtWidgets.QComboBox) else qc.text(field)
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, caption, current)
        if folder:
            if isinstance(field, QtWidgets.QComboBox):
                field.setEditText(str(folder))
            else:
                field.setText(str(folder))

    # -- state ------------------------------------------------------------------------
    def run_folder(self) -> str:
        return qc.current_text(self.run_combo).strip()

    def set_recent_runs(self, runs: Sequence[str]) -> None:
        current = self.run_folder()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for r in runs:
            self.run_combo.addItem(r)
        self.run_combo.setEditText(current or (runs[0] if runs else ""))
        self.run_combo.blockSignals(False)

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def show_progress(self, line: str, report_ready: bool) -> None:
        self.progress_label.setText(line)
        self.report_button.setEnabled(report_ready)

    def show_cases(self, cases: Sequence[Any]) -> None:
        """``CaseInfo`` rows: a mark for the state, the case ID, the error of a failed case."""
        selected = self.selected_case()
        self.case_list.clear()
        for c in cases:
            text = f"{STATE_MARK.get(c.state, '?')} {c.case_id}" + (f" \u2014 {c.error}" if c.error else "")
            item = QtWidgets.QListWidgetItem(text)
            item.setData(qc.Qt.UserRole, c.case_id)
            item.setToolTip(c.state)
            self.case_list.addItem(item)
            if c.case_id == selected:
                self.case_list.setCurrentItem(item)

    def selected_case(self) -> str:
        item = self.case_list.currentItem()
        return "" if item is None else str(item.data(qc.Qt.UserRole))

    def _on_load(self) -> None:
        if self.on_load:
            self.on_load(self.run_folder(), self.selected_case())
