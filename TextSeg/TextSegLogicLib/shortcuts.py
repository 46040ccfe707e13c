"""Refinement keys for the slice views, chosen among keys Slicer leaves free.

``SLICER_SLICE_VIEW_KEYS``: the plain and Shift keys Slicer 5.10's own slice-view widgets bind
(``SetKeyboardEventTranslation`` in Libs/MRML/DisplayableManager/vtkMRMLSliceIntersectionWidget.cxx,
vtkMRMLCameraWidget.cxx and Modules/Loadable/Markups/VTKWidgets/vtkSlicerMarkupsWidget.cxx):
b/f previous/next slice, g/t label/foreground opacity, v/V slice visibility, r reset field of
view, s snap a control point, +/- and brackets zoom and step, arrows, Page, Home/End, keypad,
Delete/BackSpace on markups. TextSeg's keys must not shadow any of them.
"""
from __future__ import annotations

SLICER_SLICE_VIEW_KEYS = frozenset({
    "b", "f", "g", "t", "v", "V", "r", "s", "minus", "plus", "bracketleft", "bracketright",
    "braceleft", "braceright", "Left", "Right", "Up", "Down", "Next", "Prior", "Home", "End", "Insert",
    "Clear", "Delete", "BackSpace", "KP_0", "KP_1", "KP_2", "KP_3", "KP_4", "KP_5", "KP_6", "KP_7", "KP_8",
})

#: key -> placement mode (the +/- point buttons and the box button)
REFINE_KEYS: tuple[tuple[str, str], ...] = (("P", "positive"), ("N", "negative"), ("O", "box"))
#: further keys: leave placement, undo / redo a refinement click
OTHER_KEYS: tuple[str, ...] = ("Escape", "Ctrl+Z", "Ctrl+Y")


def conflicts() -> list[str]:
    """TextSeg refinement keys that a Slicer slice-view key would be shadowed by ([] = none)."""
    return [k for k, _ in REFINE_KEYS if k.lower() in SLICER_SLICE_VIEW_KEYS or k in SLICER_SLICE_VIEW_KEYS]
