"""Refinement keys for the slice views, chosen among keys Slicer leaves free.

``SLICER_SLICE_VIEW_KEYS``: the plain and Shift keys Slicer 5.10's own slice-view widgets bind
(``SetKeyboardEventTranslation`` in Libs/MRML/DisplayableManager/vtkMRMLSliceIntersectionWidget.cxx,
vtkMRMLCameraWidget.cxx and Modules/Loadable/Markups/VTKWidgets/vtkSlicerMarkupsWidget.cxx):
b/f previous/next slice, g/t label/foreground opacity, v/V slice visibility, r reset field of
view, s snap a control point, +/- and brackets zoom and step, arrows, Page, Home/End, keypad,
Delete/BackSpace on markups. TextSeg's keys must not shadow any of them.

``SLICER_CANCEL_KEYS``: Escape cancels what is in progress in a slice view. It cancels a
window/level drag (Libs/MRML/DisplayableManager/vtkMRMLWindowLevelWidget.cxx,
``WidgetEventAdjustWindowLevelCancel``), a drag of the slice-intersection, markups or transform
interaction handles (vtkMRMLInteractionWidget.cxx and
Modules/Loadable/Transforms/MRMLDM/vtkMRMLTransformHandleWidget.cxx, ``WidgetEventCancel``), and
the Segment Editor binds it to "deactivate effect" (qMRMLSegmentEditorWidget.cxx,
``installKeyboardShortcuts``). A QShortcut on the view is matched before the key reaches the view's
VTK interactor, so TextSeg binds no Escape there. Placing ends the way Slicer's markups end it:
right-click or double-click (vtkSlicerMarkupsWidget.cxx, ``WidgetEventStopPlace``), the mouse-mode
toolbar, or the same key again; the place buttons follow the interaction node
(:func:`placement_ended`).
"""
from __future__ import annotations

from typing import Any

SLICER_SLICE_VIEW_KEYS = frozenset({
    "b", "f", "g", "t", "v", "V", "r", "s", "minus", "plus", "bracketleft", "bracketright",
    "braceleft", "braceright", "Left", "Right", "Up", "Down", "Next", "Prior", "Home", "End", "Insert",
    "Clear", "Delete", "BackSpace", "KP_0", "KP_1", "KP_2", "KP_3", "KP_4", "KP_5", "KP_6", "KP_7", "KP_8",
})

#: key -> placement mode (the +/- point buttons and the box button)
REFINE_KEYS: tuple[tuple[str, str], ...] = (("P", "positive"), ("N", "negative"), ("O", "box"))
#: further keys: undo / redo a refinement click
OTHER_KEYS: tuple[str, ...] = ("Ctrl+Z", "Ctrl+Y")
#: keys Slicer's views use to cancel an interaction in progress (see the module docstring)
SLICER_CANCEL_KEYS = frozenset({"Escape", "Esc"})


def bound_keys() -> list[str]:
    """Every key sequence TextSeg binds on the slice views."""
    return [k for k, _ in REFINE_KEYS] + list(OTHER_KEYS)


def conflicts() -> list[str]:
    """TextSeg slice-view keys that would shadow a Slicer slice-view key ([] = none)."""
    reserved = SLICER_SLICE_VIEW_KEYS | SLICER_CANCEL_KEYS
    return [k for k in bound_keys() if k in reserved or k.lower() in reserved]


def placement_ended(interaction_node: Any) -> bool:
    """True when the interaction node left Place mode (right-click, toolbar, a one-shot box placed)."""
    return interaction_node.GetCurrentInteractionMode() != interaction_node.Place
