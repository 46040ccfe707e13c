"""Issue 19 §5 (Escape, leaked connections) and §7 (dependencies on first run, Sample Data) in the
module widget, against the stand-ins of _slicer_app_standin (faithful to Slicer's source)."""
from __future__ import annotations

import ast
import types

import pytest

from _module_helpers import ROOT

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")

from _slicer_app_standin import Shortcut, bare_widget, load_module  # noqa: E402
from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLib.errors import ModelError  # noqa: E402
from TextSegLogicLib import TextSegLogic, shortcuts  # noqa: E402


@pytest.fixture()
def env():
    return make_scene()


@pytest.fixture()
def loaded(monkeypatch, env):
    return load_module(monkeypatch, env.app_logic)


def _logic(env) -> TextSegLogic:
    return TextSegLogic(**env.logics())


def test_application_connections_are_undone_in_cleanup(env, loaded):
    module, app = loaded
    for reload in range(3):  # the module's Reload: cleanup of the old widget, setup of a new one
        widget = bare_widget(module, _logic(env))
        widget._connectApplication()
        assert len(app.aboutToQuit.receivers) == 1 and len(app.layout.layoutChanged.receivers) == 1, reload
        app.layout.layoutChanged.emit(3)  # a new layout: shortcuts are made for its views
        assert {s.key for s in Shortcut.made if not s.deleted} >= {"P", "N", "O"}
        widget.cleanup()
        assert app.aboutToQuit.receivers == [] and app.layout.layoutChanged.receivers == []
        assert all(s.deleted for s in Shortcut.made)


def test_setup_makes_no_unrecorded_application_connection():
    src = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    setup = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "setup")
    text = ast.unparse(setup)
    assert "aboutToQuit.connect" not in text and "layoutChanged.connect" not in text
    assert "self._connectApplication()" in text


def test_escape_is_left_to_slicer_and_keys_do_not_clash(env, loaded):
    module, _ = loaded
    widget = bare_widget(module, _logic(env))
    Shortcut.made.clear()
    widget._setRefineShortcuts(True)
    keys = [s.key for s in Shortcut.made]
    assert keys and "Escape" not in keys and "Esc" not in keys
    assert sorted(set(keys)) == sorted(shortcuts.bound_keys())
    assert len(keys) == 3 * len(shortcuts.bound_keys())  # on each of the three slice views
    assert shortcuts.conflicts() == []
    assert "Escape" in shortcuts.SLICER_CANCEL_KEYS


def test_place_buttons_follow_slicer_ending_placement(env, loaded):
    """Slicer ends placing itself (right-click / double-click: vtkSlicerMarkupsWidget's
    WidgetEventStopPlace; a one-shot ROI: back to ViewTransform); the buttons must not stay down."""
    module, _ = loaded
    widget = bare_widget(module, _logic(env))
    widget._connectApplication()
    interaction = env.app_logic.GetInteractionNode()
    interaction.SetCurrentInteractionMode(interaction.Place)
    widget.panel.box_button.setChecked(True)
    interaction.SetCurrentInteractionMode(interaction.Place)  # still placing: nothing changes
    assert widget.panel.box_button.isChecked()
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)
    assert not widget.panel.box_button.isChecked()
    widget.cleanup()
    widget.panel.positive_button.setChecked(True)
    interaction.SetCurrentInteractionMode(interaction.Place)
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)
    assert widget.panel.positive_button.isChecked()  # the observer went with cleanup


def test_dependencies_are_not_asked_on_entering_the_module(env, loaded):
    module, _ = loaded
    widget = bare_widget(module, _logic(env))
    asked: list[str] = []
    widget.initializeParameterNode = lambda: None
    widget._checkDependencies = lambda: asked.append("asked") or True
    widget.enter()
    assert asked == []
    src = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert "self.logic.ensure_dependencies = self._checkDependencies" in src


def test_dependencies_are_asked_once_before_the_first_local_run(env):
    from _module_helpers import CT_CHEST

    logic = _logic(env)
    ct = env.load_volume(CT_CHEST)
    asked: list[int] = []
    logic.ensure_dependencies = lambda: asked.append(1) or False  # declined
    with pytest.raises(ModelError, match="not installed yet") as err:
        logic.start(ct, "left lung", modality="ct")
    assert "\n" not in str(err.value)
    assert logic.process is None or logic.process.proc is None  # no engine was started
    started: list[int] = []
    logic.ensure_dependencies = lambda: asked.append(2) or True

    def no_engine():
        started.append(1)
        raise ModelError("stop here")

    logic._engine_process = no_engine
    for _ in range(2):
        with pytest.raises(ModelError, match="stop here"):
            logic.start(ct, "left lung", modality="ct")
    assert asked == [1, 2] and started == [1, 1]  # asked again after a refusal, then never again


def test_notice_of_a_new_segmentation_is_shown(env, loaded, monkeypatch):
    module, _ = loaded
    widget = bare_widget(module, _logic(env))
    shown: list[str] = []
    chosen: list = []
    widget.ui = types.SimpleNamespace(outputSegmentationSelector=types.SimpleNamespace(setCurrentNode=chosen.append))
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda text, ms=0: shown.append(text), raising=False)
    widget.logic.notice = "Wrote into a new segmentation, CT TextSeg: ..."
    widget._setOutputSegmentation("node")
    assert chosen == ["node"] and shown == [widget.logic.notice]


def test_sample_ct_is_registered_on_startup(env, loaded, monkeypatch):
    import sys

    module, app = loaded
    module.TextSeg(types.SimpleNamespace())
    assert {signature for signature, _ in app.startup} == {"startupCompleted()"}
    by_name = {f.__name__: f for _, f in app.startup}
    assert set(by_name) == {"_registerSampleData", "_load_terminology"}  # Sample Data and Slicer's terminology
    fn = by_name["_registerSampleData"]
    calls: list[dict] = []
    sample_data = types.ModuleType("SampleData")
    sample_data.SampleDataLogic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "SampleData", sample_data)
    fn()
    (kw,) = calls
    assert kw["category"] == "TextSeg" and kw["uris"][0].startswith("file://")
    assert kw["thumbnailFileName"].endswith("TextSeg.png")
