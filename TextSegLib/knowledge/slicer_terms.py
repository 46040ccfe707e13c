"""The knowledge tree as a 3D Slicer terminology file (``*.term.json``), Slicer-free.

Slicer's terminology logic (``vtkSlicerTerminologiesModuleLogic::LoadTerminologyFromFile``) reads
the "segment context" JSON of dcmqi (``@schema`` below), the format of Slicer's own
``SegmentationCategoryTypeModifier-*.term.json`` files and of the peers' files
(SlicerTotalSegmentator, SlicerMONAIAuto3DSeg)::

    {"SegmentationCategoryTypeContextName": NAME, "@schema": ...,
     "SegmentationCodes": {"Category": [{CodingSchemeDesignator, CodeValue, CodeMeaning, showAnatomy,
         "Type": [{CodingSchemeDesignator, CodeValue, CodeMeaning, recommendedDisplayRGBValue, 3dSlicerLabel,
                   "Modifier": [{... same keys ...}]}]}]}}

One entry per (category, type, modifier) of the tree, named and coloured as TextSeg names and
colours segments (the colour policy of :func:`TextSegLib.engine.results.segment_colors`). The anatomic
region of a concept is not part of this file (Slicer keeps regions in a separate anatomic context;
TextSeg's tags use Slicer's DICOM master anatomic list). Run ``python -m TextSegLib.knowledge.slicer_terms OUT``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

#: TextSeg's own terminology context: what the tag of a segment with a private ``99TEXTSEG`` code names
TEXTSEG_CONTEXT = "Segmentation category and type - TextSeg"
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"
#: bump when the file's layout changes (part of the cache key)
FORMAT_VERSION = 1


def _code(text: str) -> dict[str, str] | None:
    scheme, value, meaning = text.split("^")
    if not scheme or not value:
        return None
    return {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning or value}


def _rgb255(color) -> list[int]:
    return [max(0, min(255, int(round(c * 255)))) for c in color]


def build_terminology(tree=None) -> dict:
    """The ``.term.json`` document of the knowledge tree (``tree``: default the shipped one)."""
    from ..engine.results import segment_colors
    from .tree import default_tree

    tree = tree or default_tree()
    categories: dict[str, dict] = {}
    types: dict[tuple[str, str], dict] = {}
    modifiers: set[tuple[str, str, str]] = set()
    for i in range(len(tree)):
        concept = tree.concepts[i]
        fields = concept.terminology.split("~")
        cat_key, type_key, mod_key = fields[1], fields[2], fields[3]
        cat, typ, mod = _code(cat_key), _code(type_key), _code(mod_key)
        if cat is None or typ is None:
            continue
        color = _rgb255(segment_colors([concept.name], [concept.color])[0])
        category = categories.get(cat_key)
        if category is None:
            category = categories[cat_key] = {**cat, "showAnatomy": True, "Type": []}
        entry = types.get((cat_key, type_key))
        if entry is None:
            entry = types[(cat_key, type_key)] = {**typ, "recommendedDisplayRGBValue": color,
                                                  "3dSlicerLabel": concept.name if mod is None else typ["CodeMeaning"]}
            category["Type"].append(entry)
        if mod is None:
            if not entry.get("_named"):  # the unmodified concept names and colours the type itself
                entry.update({"recommendedDisplayRGBValue": color, "3dSlicerLabel": concept.name, "_named": True})
            continue
        if (cat_key, type_key, mod_key) in modifiers:
            continue  # the same codes with another anatomic region: one entry here
        modifiers.add((cat_key, type_key, mod_key))
        entry.setdefault("Modifier", []).append({**mod, "recommendedDisplayRGBValue": color, "3dSlicerLabel": concept.name})
    for entry in types.values():
        entry.pop("_named", None)
    cats = sorted(categories.values(), key=lambda c: c["CodeMeaning"].lower())
    for c in cats:
        c["Type"].sort(key=lambda t: t["CodeMeaning"].lower())
    return {"SegmentationCategoryTypeContextName": TEXTSEG_CONTEXT, "@schema": SCHEMA,
            "SegmentationCodes": {"Category": cats}}


def tree_key(tree_file: str | os.PathLike | None = None) -> str:
    """A short hash of the tree file and the format (names the cached ``.term.json``)."""
    from ..resources import resource_path

    path = Path(tree_file) if tree_file else resource_path("knowledge", "tree.json.gz")
    h = hashlib.sha256(path.read_bytes())
    h.update(f"format{FORMAT_VERSION}".encode())
    return h.hexdigest()[:12]


def write_terminology(path: str | os.PathLike, tree=None) -> Path:
    """Write the ``.term.json`` atomically (a half-written file is never left behind)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(build_terminology(tree), indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, p)
    return p


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m TextSegLib.knowledge.slicer_terms OUT.term.json", file=sys.stderr)
        sys.exit(2)
    print(write_terminology(sys.argv[1]))
