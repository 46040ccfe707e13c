"""TextSeg's terminology in Slicer's real terminology logic (slicer-core's vtkSlicerTerminologiesModuleLogic).

The generated ``.term.json`` loads with ``LoadTerminologyFromFile`` (the call SlicerTotalSegmentator
and SlicerMONAIAuto3DSeg make), and the tag of a TextSeg segment resolves to its entry there: name
and colour, also for private ``99TEXTSEG`` codes, whose tag names TextSeg's context rather than
"DICOM master list". Slicer's own lists come from trame-slicer (the copies of Slicer's files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
if not hasattr(slicer, "vtkSlicerTerminologiesModuleLogic"):
    pytest.skip("this slicer-core has no vtkSlicerTerminologiesModuleLogic", allow_module_level=True)

from _module_helpers import ROOT  # noqa: E402,F401 (the module folder on sys.path)
from slicer_bootstrap import make_scene  # noqa: E402
from TextSegLib.engine.results import segment_colors  # noqa: E402
from TextSegLib.knowledge.slicer_terms import TEXTSEG_CONTEXT, build_terminology  # noqa: E402
from TextSegLib.knowledge.tree import default_tree  # noqa: E402
from TextSegLogicLib import mrml_io  # noqa: E402
from TextSegLogicLib.terminology import load_terminology, terminology_file  # noqa: E402

DM = "Segmentation category and type - DICOM master list"
DEFAULT_RGB = (127, 127, 127)  # what a deserialized entry holds before a terminology fills it in


def _slicer_lists() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("trame_slicer")
    if spec is None:
        return []
    folder = Path(spec.origin).parent / "resources" / "terminologies"
    return sorted(folder.glob("SegmentationCategoryTypeModifier-*.term.json"))


@pytest.fixture(scope="module")
def tree():
    return default_tree()


@pytest.fixture(scope="module")
def private(tree):
    return next(tree.concepts[i] for i in range(len(tree)) if tree.concepts[i].is_local_code)


def _resolve(logic, tag: str):
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(tag, entry)
    assert entry.GetTypeObject().GetRecommendedDisplayRGBValue() == DEFAULT_RGB
    assert logic.UpdateEntryFromLoadedTerminologies(entry, [], [])  # True for any valid entry, found or not
    found = bool(entry.GetTypeObject().GetSlicerLabel())  # filled in only from a loaded terminology
    return found, entry


def test_private_codes_name_textsegs_context(tree, private):
    assert private.terminology.split("~")[0] == TEXTSEG_CONTEXT
    assert not any(tree.concepts[i].is_local_code and tree.concepts[i].terminology.startswith(DM)
                   for i in range(len(tree)))


def test_file_loads_and_a_segment_tag_resolves_to_its_entry(tmp_path, tree, private):
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    for path in _slicer_lists():  # Slicer's default lists, as the application has them loaded
        assert logic.LoadTerminologyFromFile(str(path))
    if _slicer_lists():  # before TextSeg's file: Slicer's lists do not know the private code
        found, _ = _resolve(logic, private.terminology)
        assert not found
    # the module's loader, with Slicer's real logic class in place of slicer.modules.terminologies.logic()
    assert load_terminology(logic, tmp_path) == TEXTSEG_CONTEXT
    assert logic.IsTerminologyContextLoaded(TEXTSEG_CONTEXT)
    assert load_terminology(logic, tmp_path) == TEXTSEG_CONTEXT  # idempotent
    doc = json.loads(terminology_file(tmp_path).read_text())
    assert logic.GetNumberOfCategoriesInTerminology(TEXTSEG_CONTEXT) == len(doc["SegmentationCodes"]["Category"])
    # a TextSeg segment on real MRML carries the tag; the tag resolves to the entry, name and colour
    env = make_scene()
    node = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    sid, _ = mrml_io.put_segment(node, None, private.name, mask, np.eye(4))
    segment = node.GetSegmentation().GetSegment(sid)
    mrml_io.set_terminology(segment, private.terminology)
    tag = segment.GetTerminology() if hasattr(segment, "GetTerminology") else segment.GetTag("TerminologyEntry")
    assert tag.split("~")[0] == TEXTSEG_CONTEXT
    found, entry = _resolve(logic, tag)
    assert found and entry.GetTerminologyContextName() == TEXTSEG_CONTEXT
    assert entry.GetTypeObject().GetCodeMeaning() == private.name
    assert entry.GetTypeObject().GetSlicerLabel() == private.name
    colour = tuple(round(c * 255) for c in segment_colors([private.name], [private.color])[0])
    assert entry.GetTypeObject().GetRecommendedDisplayRGBValue() == colour


def test_modifier_entries_resolve_with_their_own_colour(tmp_path, tree):
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert load_terminology(logic, tmp_path) == TEXTSEG_CONTEXT
    left = tree.lookup("left kidney")[0]
    fields = left.terminology.split("~")
    tag = "~".join([TEXTSEG_CONTEXT] + fields[1:])
    found, entry = _resolve(logic, tag)
    assert found and entry.GetTypeModifierObject().GetCodeMeaning() == "Left"
    assert entry.GetTypeModifierObject().GetSlicerLabel() == left.name
    assert entry.GetTypeModifierObject().GetRecommendedDisplayRGBValue() == left.color_rgb255


def test_generated_file_follows_slicers_format(tree):
    """The keys and nesting of Slicer's own .term.json files (dcmqi's segment-context schema)."""
    doc = build_terminology(tree)
    reference = json.loads(_slicer_lists()[0].read_text()) if _slicer_lists() else None
    assert doc["SegmentationCategoryTypeContextName"] == TEXTSEG_CONTEXT
    if reference is not None:
        assert doc["@schema"] == reference["@schema"]
        assert set(doc) == set(reference)
    code = {"CodingSchemeDesignator", "CodeValue", "CodeMeaning"}
    n_types = n_mods = 0
    for cat in doc["SegmentationCodes"]["Category"]:
        assert code <= set(cat) and isinstance(cat["showAnatomy"], bool)
        for t in cat["Type"]:
            n_types += 1
            assert code <= set(t) and len(t["recommendedDisplayRGBValue"]) == 3
            assert all(isinstance(v, int) and 0 <= v <= 255 for v in t["recommendedDisplayRGBValue"])
            for m in t.get("Modifier", []):
                n_mods += 1
                assert code <= set(m) and len(m["recommendedDisplayRGBValue"]) == 3
    seen = {tuple(tree.concepts[i].terminology.split("~")[1:4]) for i in range(len(tree))}
    assert n_types + n_mods >= len({s[:2] for s in seen}) and n_mods > 0


def test_cached_file_is_written_once_per_tree(tmp_path):
    first = terminology_file(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert terminology_file(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert first.name.startswith("SegmentationCategoryTypeModifier-TextSeg-") and first.suffixes[-2:] == [".term", ".json"]
    assert not list(tmp_path.glob("*.tmp"))
