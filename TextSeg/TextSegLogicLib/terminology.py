"""TextSeg's terminology in Slicer's terminology logic, so the segment editor knows TextSeg's entries.

As SlicerTotalSegmentator and SlicerMONAIAuto3DSeg do, the module loads a ``.term.json`` with
``slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)`` once Slicer has started.
The file is generated from the knowledge tree (:mod:`TextSegLib.knowledge.slicer_terms`) into
``$TEXTSEG_HOME/cache`` under a name keyed by the tree's hash, so it is built once per tree
version and never goes stale. Segments with a private ``99TEXTSEG`` code carry TextSeg's context
name (``Segmentation category and type - TextSeg``) in their terminology tag, so Slicer resolves
them there instead of calling them part of the DICOM master list.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from TextSegLib.knowledge.slicer_terms import TEXTSEG_CONTEXT, tree_key, write_terminology


def terminology_file(cache_dir: str | Path | None = None) -> Path:
    """The generated ``.term.json`` (written now if this tree version has none yet)."""
    if cache_dir is None:
        from TextSegLib.models.catalog import textseg_home

        cache_dir = textseg_home() / "cache"
    path = Path(cache_dir) / f"SegmentationCategoryTypeModifier-TextSeg-{tree_key()}.term.json"
    if not path.is_file():
        write_terminology(path)
    return path


def slicer_terminology_logic() -> Any:
    """``slicer.modules.terminologies.logic()``, or None outside Slicer (or without the module)."""
    try:
        import slicer
    except ImportError:
        return None
    module = getattr(getattr(slicer, "modules", None), "terminologies", None)
    return module.logic() if module is not None else None


def load_terminology(logic: Any = None, cache_dir: str | Path | None = None) -> str:
    """Load TextSeg's context into Slicer's terminology logic (``logic``: default Slicer's);
    returns the context name, or "" when there is no terminology logic or loading failed."""
    logic = logic if logic is not None else slicer_terminology_logic()
    if logic is None:
        return ""
    if logic.IsTerminologyContextLoaded(TEXTSEG_CONTEXT):
        return TEXTSEG_CONTEXT
    try:
        path = terminology_file(cache_dir)
    except OSError as exc:
        logging.warning("TextSeg: its terminology file could not be written (%s); Slicer's terminology "
                        "selector will not list TextSeg's entries.", exc)
        return ""
    name = logic.LoadTerminologyFromFile(str(path))
    if name != TEXTSEG_CONTEXT:
        logging.warning("TextSeg: Slicer did not load its terminology file %s.", path)
        return ""
    return name
