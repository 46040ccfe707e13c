"""Load TextSeg/TextSeg.py (Module, Widget, Test) outside the Slicer application.

The MRML classes and ``slicer.util.VTKObservationMixin`` are slicer-core's real ones; what only
the application has is stood in for, after Slicer's source:

- ``slicer.app.aboutToQuit`` and ``layoutManager().layoutChanged`` are PythonQt signals:
  ``connect(callable)`` adds a receiver, ``disconnect(callable)`` removes that same callable
  (PythonQt's PythonQtSignalFunction); :class:`Signal` counts receivers so a test can see a leak.
- ``slicer.app.connect("startupCompleted()", fn)`` (qSlicerApplication's signal, used by Slicer's
  scripted-module template Utilities/Templates/Modules/Scripted/TemplateKey.py) is recorded.
- ``slicer.app.applicationLogic()`` is slicer-core's real vtkSlicerApplicationLogic, whose
  interaction node is the one Slicer's views switch between Place and ViewTransform.
- ``qt.QShortcut`` records the key sequences bound on each slice view.
- ``slicer.ScriptedLoadableModule`` / ``slicer.parameterNodeWrapper``: bare base classes and a
  pass-through decorator (TextSeg.py's annotations are strings, never evaluated here).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

from _module_helpers import ROOT


class Signal:
    """A PythonQt signal: ``connect`` / ``disconnect`` of one callable; ``emit`` calls each receiver."""

    def __init__(self) -> None:
        self.receivers: list[Any] = []

    def connect(self, slot: Any) -> None:
        self.receivers.append(slot)

    def disconnect(self, slot: Any) -> None:
        self.receivers.remove(slot)  # a callable never connected: PythonQt refuses too

    def emit(self, *args: Any) -> None:
        for slot in list(self.receivers):
            slot(*args)


class Shortcut:
    made: list["Shortcut"] = []

    def __init__(self, key: str, parent: Any) -> None:
        self.key, self.parent, self.deleted = key, parent, False
        Shortcut.made.append(self)

    def setContext(self, context: Any) -> None:
        self.context = context

    def connect(self, signature: str, fn: Any) -> None:
        self.activated = fn

    def setParent(self, parent: Any) -> None:
        self.parent = parent

    def deleteLater(self) -> None:
        self.deleted = True


class LayoutManager:
    def __init__(self) -> None:
        self.layoutChanged = Signal()
        self.views = {"Red": object(), "Green": object(), "Yellow": object()}

    def sliceViewNames(self) -> list[str]:
        return list(self.views)

    def sliceWidget(self, name: str) -> Any:
        return types.SimpleNamespace(sliceView=lambda: self.views[name])


class App:
    def __init__(self, app_logic: Any) -> None:
        self.aboutToQuit = Signal()
        self.layout = LayoutManager()
        self.app_logic = app_logic
        self.startup: list[tuple[str, Any]] = []

    def connect(self, signature: str, fn: Any) -> None:
        self.startup.append((signature, fn))

    def layoutManager(self) -> LayoutManager:
        return self.layout

    def applicationLogic(self) -> Any:
        return self.app_logic


class Button:
    """A checkable Qt button (PySide getters, as qt_compat reads them outside Slicer)."""

    def __init__(self, enabled: bool = True) -> None:
        self._checked, self._enabled = False, enabled

    def isChecked(self) -> bool:
        return self._checked

    def setChecked(self, on: bool) -> None:
        self._checked = bool(on)

    def isEnabled(self) -> bool:
        return self._enabled

    def click(self) -> None:
        pass


def _modules(app: App) -> dict[str, Any]:
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent: Any) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent: Any = None) -> None:
            super().__init__()

    class ScriptedLoadableModuleTest:
        pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(slm, cls.__name__, cls)
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.Choice = lambda choices: choices
    pnw.parameterNodeWrapper = lambda cls: cls
    qt = types.ModuleType("qt")
    qt.QShortcut = Shortcut
    qt.QKeySequence = lambda key: key
    qt.Qt = types.SimpleNamespace(WidgetShortcut="WidgetShortcut")
    return {"slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": pnw, "qt": qt}


def load_module(monkeypatch: Any, app_logic: Any) -> tuple[Any, App]:
    """TextSeg.py imported against the stand-ins; returns (module, app)."""
    import slicer

    import TextSegPanelLib.qt_compat  # noqa: F401  bound to PySide6 before the stand-in 'qt' exists

    app = App(app_logic)
    for name, module in _modules(app).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    spec = importlib.util.spec_from_file_location("TextSeg_under_test", ROOT / "TextSeg" / "TextSeg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, app


def bare_widget(module: Any, logic: Any) -> Any:
    """A TextSegWidget with its logic and the panel parts the seams touch (no .ui, no controller UI)."""
    widget = module.TextSegWidget(types.SimpleNamespace(isEntered=True))
    widget.logic = logic
    widget.panel = types.SimpleNamespace(
        positive_button=Button(), negative_button=Button(), box_button=Button(), refine_button=Button(),
        refine_undo_button=Button(), status_label=types.SimpleNamespace(setText=lambda t: None))
    widget.controller = types.SimpleNamespace(job=None, batch=None)
    widget._refineShortcuts = []
    return widget
