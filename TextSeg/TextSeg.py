"""TextSeg: text-prompted segmentation of CT, MRI and PET in 3D Slicer.

Module layout (Slicer conventions):
  TextSeg        module description
  TextSegWidget  thin: wires the .ui and the plain-Qt panel to the logic
  TextSegLogic   no Qt: TextSegLogicLib.logic.TextSegLogic + parameter node
  TextSegTest    end-to-end test inside a running Slicer
"""
from __future__ import annotations

import os
import sys
from typing import Annotated, Any

#: The oldest Slicer TextSeg supports: 5.10 (Python 3.12; vtkSegment.SetTerminology, commit 49a2510).
#: Slicer 5.8 runs Python 3.9, which cannot import TextSegLib: say so in one line, not a traceback.
MINIMUM_SLICER = "5.10"
if sys.version_info < (3, 10):
    raise ImportError(f"TextSeg needs 3D Slicer {MINIMUM_SLICER} or later; this Slicer runs Python "
                      f"{sys.version_info[0]}.{sys.version_info[1]}. Install a newer Slicer from download.slicer.org.")

import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

_HERE = os.path.dirname(os.path.abspath(__file__))
#: A source checkout added as a module path in a binary Slicer (docs/slicer.md): TextSegLib is one folder up.
_CHECKOUT = os.path.dirname(_HERE)
for _path in (_CHECKOUT, _HERE):
    if (_path == _HERE or os.path.isdir(os.path.join(_path, "TextSegLib"))) and _path not in sys.path:
        sys.path.insert(0, _path)

from TextSegLogicLib.logic import TextSegLogic as _CoreLogic  # noqa: E402
from TextSegLib.errors import TextSegError  # noqa: E402


class TextSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent: Any) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TextSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["TextSeg developers (TextSeg project)"]
        self.parent.helpText = (
            "Segment CT, MRI and PET from text prompts such as <i>liver, left kidney, spleen</i> "
            "with SAT models (Zhao et al., <i>One Model to Rule them All</i>). Each prompt becomes one "
            "segment with its coded terminology and recommended colour. Press Ctrl+Enter in the prompt "
            "box to run. Segments you made or edited are never overwritten. "
            f"Needs Slicer {MINIMUM_SLICER} or later. "
            "See <a href='https://github.com/textseg/SlicerTextSeg'>the documentation</a>."
        )
        self.parent.acknowledgementText = (
            "Built on SAT (Zhao Z. et al., 'One Model to Rule them All: Towards Universal Segmentation "
            "for Medical Images with Text Prompts') and on 3D Slicer's segmentation and terminology "
            "infrastructure. Test data from TotalSegmentator and slicerio."
        )
        slicer.app.connect("startupCompleted()", _load_terminology)  # as SlicerTotalSegmentator does
        # Sample Data lists the self-test's CT once the application has started (Slicer's module template)
        slicer.app.connect("startupCompleted()", _registerSampleData)


def _load_terminology() -> None:
    """TextSeg's entries into Slicer's terminology selector (TextSegLogicLib.terminology)."""
    from TextSegLogicLib.terminology import load_terminology

    load_terminology()


def _registerSampleData() -> None:
    """Add the bundled abdomen CT to the Sample Data module (category TextSeg)."""
    try:
        import SampleData
    except ImportError:  # a Slicer built without the SampleData module
        return
    from TextSegLogicLib.selftest import register_sample_data

    register_sample_data(SampleData.SampleDataLogic.registerCustomSampleDataSource,
                         os.path.join(_HERE, "Resources", "Icons", "TextSeg.png"))


@parameterNodeWrapper
class TextSegParameterNode:
    """Module state saved with the scene."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    prompts: str = ""
    modality: Annotated[str, Choice(["", "ct", "mri", "pet"])] = ""
    model: Annotated[str, Choice(["bundled", "sat-nano", "sat-pro", "remote"])] = "bundled"
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"


class TextSegLogic(_CoreLogic, ScriptedLoadableModuleLogic):
    """The Qt-free logic bound to the application scene; usable from the Python console.

    _CoreLogic comes first: ScriptedLoadableModuleLogic.__init__ calls super().__init__(),
    which then reaches object, so the core logic is initialised once, with the kwargs."""

    def __init__(self, **kwargs: Any) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _CoreLogic.__init__(self, **kwargs)

    def getParameterNode(self) -> TextSegParameterNode:
        return TextSegParameterNode(super().getParameterNode())


class QSettingsStore:
    """Mapping view of Slicer's user settings for TextSegSettings."""

    def __init__(self) -> None:
        self.qsettings = slicer.app.userSettings()

    def get(self, key: str, default: Any = None) -> Any:
        value = self.qsettings.value(key)
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        return self.qsettings.value(key)

    def __setitem__(self, key: str, value: str) -> None:
        self.qsettings.setValue(key, value)

    def __delitem__(self, key: str) -> None:
        self.qsettings.remove(key)

    def __iter__(self):
        return iter(self.qsettings.allKeys())

    def __len__(self) -> int:
        return len(self.qsettings.allKeys())


class TextSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: loads the .ui, hosts the panel, and hands everything to the controller."""

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: TextSegLogic | None = None
        self._parameterNode: TextSegParameterNode | None = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from TextSegLogicLib.completion import make_suggester
        from TextSegLogicLib.settings import TextSegSettings
        from TextSegPanelLib.controller import TextSegController
        from TextSegPanelLib.panel import TextSegPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TextSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = TextSegLogic()
        self.panel = TextSegPanel(suggest=make_suggester())
        # Slicer node selectors replace the panel's plain combo boxes.
        self.panel.volume_combo.hide()
        self.panel.volume_slot.addWidget(self.ui.inputVolumeSelector)
        self.panel.segmentation_combo.hide()
        self.panel.segmentation_slot.addWidget(self.ui.outputSegmentationSelector)
        self.ui.panelHost.layout().addWidget(self.panel)

        self.controller = TextSegController(
            self.panel,
            self.logic,
            volume_node=lambda: self.ui.inputVolumeSelector.currentNode(),
            segmentation_node=lambda: self.ui.outputSegmentationSelector.currentNode(),
            set_segmentation_node=self._setOutputSegmentation,
            settings=TextSegSettings(QSettingsStore()),
            ask_consent=self._askUploadConsent,
            test_connection=_remote_test_connection(),
            dicom_modality=_dicom_modality,
            place=self._placeMarkups,
            refine_inputs=self._refineInputs,
        )
        self.controller.default_python = _slicer_python()
        self.logic.ensure_dependencies = self._checkDependencies  # asked on the first local run
        if self.controller.batch is not None:
            self.controller.batch.on_loaded = self._onBatchCaseLoaded
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.controller.volume_changed)
        self.controller.pacs.ask_consent = self._askPacsConsent
        self.controller.ask_licence = self._askModelLicence
        self.ui.outputSegmentationSelector.currentNodeChanged.connect(self.controller.pacs.refresh)
        self._connectApplication()
        self._setupRefineInteraction()
        self.panel.prompt_edit.textChanged.connect(self._updateParameterNodeFromPanel)
        self.panel.model_combo.currentIndexChanged.connect(self._updateParameterNodeFromPanel)
        self.panel.modality_combo.currentIndexChanged.connect(self._updateParameterNodeFromPanel)
        self.panel.device_combo.currentIndexChanged.connect(self._updateParameterNodeFromPanel)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    # -- lifecycle ------------------------------------------------------------------
    def enter(self) -> None:
        self.initializeParameterNode()
        self._setRefineShortcuts(True)

    def exit(self) -> None:
        self._setRefineShortcuts(False)
        if self._parameterNode and getattr(self, "_parameterNodeGuiTag", None) is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def cleanup(self) -> None:
        self.removeObservers()
        self._appConnections.disconnect_all()  # a Reload must not leave the old widget connected
        self._setRefineLive(None, False)
        self._setRefineShortcuts(False)
        if self.controller.job is not None:
            self.controller.job.request_cancel()
        if self.controller.batch is not None:
            self.controller.batch.close()  # stops watching only: the batch process runs on
        pacs = getattr(self.controller, "pacs", None)
        if pacs is not None:
            pacs.stop()  # a PACS test or send in flight: its child process tree ends too
        self.logic.shutdown()

    def _connectApplication(self) -> None:
        """Connections to application-wide objects, all undone in :meth:`cleanup`."""
        from TextSegLogicLib.lifecycle import Connections

        self._appConnections = Connections()
        self._appConnections.connect(slicer.app.aboutToQuit, self.logic.shutdown)  # the engine ends with Slicer
        layout = slicer.app.layoutManager()
        if layout is not None:  # views created later (a new layout) get the shortcuts too
            self._appConnections.connect(layout.layoutChanged, self._onLayoutChanged)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if interaction is not None:  # Slicer ends placing itself (right-click): the buttons follow
            self.addObserver(interaction, interaction.InteractionModeChangedEvent, self._onInteractionModeChanged)

    def _onLayoutChanged(self, *_: Any) -> None:
        self._setRefineShortcuts(self.parent.isEntered)

    def _onInteractionModeChanged(self, caller: Any, event: Any) -> None:
        from TextSegLogicLib.shortcuts import placement_ended
        from TextSegPanelLib import qt_compat as qc

        if placement_ended(caller):
            for button in (self.panel.positive_button, self.panel.negative_button, self.panel.box_button):
                if qc.is_checked(button):
                    button.setChecked(False)

    def _setOutputSegmentation(self, node: Any) -> None:
        """Show the run's segmentation; say so when it is not the one the user chose."""
        self.ui.outputSegmentationSelector.setCurrentNode(node)
        notice = getattr(self.logic, "notice", "")
        if notice:
            slicer.util.showStatusMessage(notice, 15000)

    def onSceneStartClose(self, caller: Any, event: Any) -> None:
        if self.controller.job is not None:
            self.controller.job.request_cancel()  # its result would refer to nodes that are going away
        self.setParameterNode(None)

    def onSceneEndClose(self, caller: Any, event: Any) -> None:
        # node IDs recur after a close: forget run history, refine caches, and reset the buttons
        self.logic.scene_closed()
        self.controller.scene_closed()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, node: TextSegParameterNode | None) -> None:
        if self._parameterNode and getattr(self, "_parameterNodeGuiTag", None) is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = node
        if node:
            from TextSegPanelLib.controller import restore_choices

            # read everything first: each restored widget writes the panel back into the node
            saved = {"model": node.model, "modality": node.modality, "device": node.device}
            prompts = node.prompts
            self._parameterNodeGuiTag = node.connectGui(self.ui)
            restore_choices(self.panel, saved)
            self.panel.prompt_edit.setPlainText(prompts)

    def _updateParameterNodeFromPanel(self, *_: Any) -> None:
        from TextSegPanelLib import qt_compat as qc

        p = self._parameterNode
        if p is None:
            return
        p.prompts = qc.plain_text(self.panel.prompt_edit)
        p.model = qc.current_data(self.panel.model_combo)
        p.modality = qc.current_data(self.panel.modality_combo) or ""
        p.device = qc.current_data(self.panel.device_combo)

    def _onBatchCaseLoaded(self, volume: Any, segmentation: Any) -> None:
        """A batch case was loaded: make it the module's input and output, and show it."""
        self.ui.inputVolumeSelector.setCurrentNode(volume)
        self.ui.outputSegmentationSelector.setCurrentNode(segmentation)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)

    # -- Slicer-only services given to the controller ----------------------------------
    def _askUploadConsent(self, url: str) -> tuple[bool, bool]:
        import qt

        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle("Send image to server?")
        box.setText(f"The selected volume will be uploaded to {url} for segmentation. Continue?")
        box.setStandardButtons(qt.QMessageBox.Yes | qt.QMessageBox.No)
        remember = qt.QCheckBox("Don't ask again for this server")
        box.setCheckBox(remember)
        allowed = box.exec_() == qt.QMessageBox.Yes
        return allowed, bool(remember.checked)

    def _askModelLicence(self, name: str, notice: str) -> bool:
        import qt

        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(f"Accept the licence of {name}?")
        box.setText(f"{notice}\n\nAccept this licence and download? (Asked once; `textseg models pull` "
                    "shares the answer.)")
        box.setStandardButtons(qt.QMessageBox.Yes | qt.QMessageBox.No)
        box.setDefaultButton(qt.QMessageBox.No)
        return box.exec_() == qt.QMessageBox.Yes

    def _askPacsConsent(self, url: str) -> tuple[bool, bool]:
        import qt

        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle("Send segmentation to PACS?")
        box.setText(f"The segmentation will be stored on {url} as a DICOM SEG carrying the patient and study "
                    "identifiers of its source series. Continue?")
        box.setStandardButtons(qt.QMessageBox.Yes | qt.QMessageBox.No)
        remember = qt.QCheckBox("Don't ask again for this server")
        box.setCheckBox(remember)
        allowed = box.exec_() == qt.QMessageBox.Yes
        return allowed, bool(remember.checked)

    def _markupsNode(self, kind: str) -> Any:
        """The markups node holding 'positive' / 'negative' clicks or the refinement 'box'."""
        from TextSegLogicLib.refinement import prompt_node

        return prompt_node(slicer.mrmlScene, kind)

    def _placeMarkups(self, kind: str, active: bool) -> None:
        """Start (or stop) placing refinement clicks / the box in the views."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if not active:
            interaction.SetCurrentInteractionMode(interaction.ViewTransform)
            return
        node = self._markupsNode(kind)
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(kind != "box")
        interaction.SetCurrentInteractionMode(interaction.Place)

    def _refineInputs(self) -> tuple[list, list, list]:
        """The points/box placed since the last refine of the chosen segment (Refine button)."""
        refinement = self._currentRefinement()
        return refinement.pending_inputs() if refinement is not None else ([], [], [])

    # -- refinement interaction (Slicer-only, untestable headless: keep thin) -----------
    from TextSegLogicLib.shortcuts import REFINE_KEYS as _REFINE_KEYS  # keys Slicer's slice views leave free

    def _currentRefinement(self) -> Any:
        """The logic's SegmentRefinement for the segment chosen in the Refine section, or None."""
        from TextSegPanelLib import qt_compat as qc

        sid = qc.current_data(self.panel.refine_segment_combo)
        volume = self.ui.inputVolumeSelector.currentNode()
        seg = self.ui.outputSegmentationSelector.currentNode()
        if not sid or volume is None or seg is None or seg.GetSegmentation().GetSegment(sid) is None:
            return None
        return self.logic.refinement(volume, seg, sid)

    def _setupRefineInteraction(self) -> None:
        """Live toggle, Redo, and the place buttons' slice-view shortcuts (P/N/O, Ctrl+Z/Ctrl+Y; no Escape)."""
        self._refineShortcuts: list = []
        self.panel.on_refine_live = lambda sid, on: self._setRefineLive(sid, on)
        self.panel.on_redo = self._redoRefine
        # live refine follows one segment: choosing another one turns it off
        self.panel.refine_segment_combo.currentIndexChanged.connect(lambda *_: self.panel.refine_live_check.setChecked(False))

    def _setRefineLive(self, segmentId: Any, on: bool) -> None:
        current = getattr(self.logic, "_refinements", {}) if self.logic is not None else {}
        for refinement in list(current.values()):
            refinement.set_live(False)
        if not on:
            return
        refinement = self._currentRefinement()
        if refinement is None:
            self.panel.status_label.setText("Choose a segment to refine first.")
            self.panel.refine_live_check.setChecked(False)
            return

        def report(result: Any) -> None:
            if isinstance(result, Exception):
                self.panel.status_label.setText(str(result))
            elif result is not None:
                changed = "no change" if result.changed_box is None else "segment updated"
                self.panel.status_label.setText(f"Refined ({changed}) in {result.info.get('seconds', 0):.2f} s.")

        refinement.on_result = report
        refinement.set_live(True)

    def _redoRefine(self) -> None:
        seg = self.ui.outputSegmentationSelector.currentNode()
        try:
            if seg is None or not self.logic.redo(seg):
                self.panel.status_label.setText("Nothing to redo.")
        except TextSegError as exc:  # a redo that would overwrite a later edit
            self.panel.status_label.setText(str(exc))

    def _setRefineShortcuts(self, on: bool) -> None:
        """Create (module entered) or delete (module left) the shortcuts, scoped to the slice views."""
        import qt
        from TextSegPanelLib import qt_compat as qc

        for shortcut in getattr(self, "_refineShortcuts", []):
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._refineShortcuts = []
        if not on or not qc.is_enabled(self.panel.refine_button):
            return
        buttons = {"positive": self.panel.positive_button, "negative": self.panel.negative_button, "box": self.panel.box_button}
        actions = [(key, lambda b=buttons[kind]: b.setChecked(not qc.is_checked(b))) for key, kind in self._REFINE_KEYS]
        # no Escape: it is Slicer's cancel key in the views (TextSegLogicLib/shortcuts.py)
        actions.append(("Ctrl+Z", self.panel.refine_undo_button.click))
        actions.append(("Ctrl+Y", self._redoRefine))
        layout = slicer.app.layoutManager()
        for name in layout.sliceViewNames() if layout is not None else []:
            view = layout.sliceWidget(name).sliceView()
            for key, fn in actions:
                shortcut = qt.QShortcut(qt.QKeySequence(key), view)
                shortcut.setContext(qt.Qt.WidgetShortcut)
                shortcut.connect("activated()", fn)
                self._refineShortcuts.append(shortcut)

    def _checkDependencies(self) -> bool:
        """Before the first local run: ask to install what is missing; True when all is importable."""
        from TextSegLogicLib.deps import install_missing, missing_requirements

        missing = missing_requirements()
        if not missing:
            return True

        def install_torch(requirement: str) -> Any:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay("TextSeg needs the PyTorch extension: install it from the Extensions Manager.")
                return None
            return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=requirement[len("torch"):])

        with slicer.util.tryWithErrorDisplay("Installing TextSeg's Python dependencies failed.", waitCursor=True):
            installed = install_missing(missing, slicer.util.confirmOkCancelDisplay, slicer.util.pip_install, install_torch)
        self.controller.refresh_models()  # the model list was computed before the install
        if installed and missing_requirements():
            if slicer.util.confirmYesNoDisplay("TextSeg's packages are installed; Slicer must restart to load them. Restart now?"):
                slicer.util.restart()
        return not missing_requirements()


def _dicom_modality(volume_node: Any) -> str:
    """The DICOM Modality tag (0008,0060) of a volume loaded from DICOM, else ''."""
    uids = volume_node.GetAttribute("DICOM.instanceUIDs") if volume_node else None
    db = getattr(slicer, "dicomDatabase", None)
    if not uids or db is None:
        return ""
    return db.fileValue(db.fileForInstance(uids.split()[0]), "0008,0060") or ""


def _slicer_python() -> str:
    """PythonSlicer (Slicer's own interpreter as a program) for the engine process."""
    import shutil

    return shutil.which("PythonSlicer") or ""


def _remote_test_connection() -> Any:
    try:
        from TextSegLib.remote import test_connection  # type: ignore[attr-defined]
    except ImportError:
        return None
    return test_connection


class TextSegTest(ScriptedLoadableModuleTest):
    """Liver in the bundled abdomen CT, inside a running Slicer (TextSegLogicLib.selftest).

    Passes without PyTorch: it then checks the sample, the coded prompt and the MRML import
    and says that it skipped the model run. No engine process is left behind."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_liver_in_abdomen_ct()

    def test_liver_in_abdomen_ct(self) -> None:
        from TextSegLogicLib.selftest import segment_liver

        logic = TextSegLogic()
        try:
            report = segment_liver(logic, slicer.util.loadVolume, self.delayDisplay)
        finally:
            logic.shutdown()
        self.delayDisplay(f"Test passed: {report.summary()}")
