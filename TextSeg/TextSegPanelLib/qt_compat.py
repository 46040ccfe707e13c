"""One Qt API for the panel code: Slicer's PythonQt (``import qt``) or Qt.py/PySide6.

PythonQt exposes Qt properties as attributes (``edit.plainText``) where
PySide6 has getter methods (``edit.toPlainText()``); :func:`get` reads either.
Setters (``setText``) and signals (``clicked.connect``) are the same in both.
"""
from __future__ import annotations

from typing import Any

try:  # inside Slicer
    import qt as _qt  # type: ignore[import-not-found]

    QtCore = QtGui = QtWidgets = _qt
    PYTHONQT = True
except ImportError:  # tests, or any PySide/PyQt application
    from Qt import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]

    PYTHONQT = False

Qt = QtCore.Qt
QShortcut = getattr(QtGui, "QShortcut", None) or QtWidgets.QShortcut
QKeySequence = QtGui.QKeySequence


def get(obj: Any, prop: str, pyside_getter: str | None = None) -> Any:
    """Read a Qt property: attribute on PythonQt, getter call on PySide."""
    if PYTHONQT:
        return getattr(obj, prop)
    value = getattr(obj, pyside_getter or prop)
    return value() if callable(value) else value


def plain_text(edit: Any) -> str:
    return str(get(edit, "plainText", "toPlainText"))


def text(widget: Any) -> str:
    return str(get(widget, "text"))


def current_text(combo: Any) -> str:
    return str(get(combo, "currentText"))


def current_data(combo: Any) -> Any:
    if PYTHONQT:
        return combo.itemData(combo.currentIndex)
    return combo.currentData()


def is_checked(button: Any) -> bool:
    return bool(get(button, "checked", "isChecked"))


def is_enabled(widget: Any) -> bool:
    return bool(get(widget, "enabled", "isEnabled"))


def is_visible(widget: Any) -> bool:
    return bool(get(widget, "visible", "isVisible"))


def count(widget: Any) -> int:
    return int(get(widget, "count"))


def count_rows(table: Any) -> int:
    return int(get(table, "rowCount"))


def value(widget: Any) -> int:
    return int(get(widget, "value"))


def tooltip(widget: Any) -> str:
    return str(get(widget, "toolTip"))


def save_file_name(parent: Any, caption: str, file_filter: str) -> str:
    """A 'Save as' dialog; PythonQt returns the path, PySide a (path, filter) tuple."""
    result = QtWidgets.QFileDialog.getSaveFileName(parent, caption, "", file_filter)
    return str(result[0] if isinstance(result, tuple) else result)
