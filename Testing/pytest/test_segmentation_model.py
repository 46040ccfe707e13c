"""Segment / Segmentation objects and Slicer terminology strings."""
from __future__ import annotations

import numpy as np
import pytest
from slicerio import segmentation as slicerio_seg

from TextSegLib.errors import TerminologyError
from TextSegLib.segmentation import (
    Segment, Segmentation, SegmentationError, parse_terminology, terminology_string,
)
from TextSegLib.volume import Volume

from _io_helpers import SLICERIO

LIVER = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
         "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


def _ref(shape=(6, 5, 4)) -> Volume:
    return Volume(np.zeros(shape, np.int16), np.diag([0.8, 0.8, 2.5, 1.0]))


def _mask(shape=(6, 5, 4), sl=np.s_[1:3, 1:3, 1:3]) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[sl] = True
    return m


def test_terminology_string_matches_slicer_format():
    s = terminology_string(("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver"))
    assert s == LIVER
    lung = terminology_string(("SCT", "123037004", "Anatomical Structure"), ("SCT", "39607008", "Lung"),
                              ("SCT", "24028007", "Right"))
    assert lung.split("~")[3] == "SCT^24028007^Right"


def test_terminology_matches_every_fixture_tag_and_slicerio():
    header = (SLICERIO / "Segmentation.seg.nrrd").read_bytes()[:8000].decode("latin-1")
    tags = [ln.split("TerminologyEntry:")[1].rstrip("|") for ln in header.splitlines() if "TerminologyEntry:" in ln]
    assert len(tags) == 7
    for tag in tags:
        entry = parse_terminology(tag)
        assert entry.to_string() == tag
        assert slicerio_seg.terminology_entry_to_string(slicerio_seg.terminology_entry_from_string(tag)) == tag
    left_lung = parse_terminology(tags[5])
    assert left_lung.type == ("SCT", "39607008", "Lung") and left_lung.type_modifier == ("SCT", "7771000", "Left")


@pytest.mark.parametrize("bad", ["", "a~b", LIVER.replace("SCT^10200004^Liver", "Liver"),
                                 LIVER.replace("SCT^123037004^Anatomical Structure", "^^")])
def test_parse_terminology_rejects_malformed(bad):
    with pytest.raises(TerminologyError):
        parse_terminology(bad)


def test_terminology_string_rejects_reserved_chars():
    with pytest.raises(TerminologyError, match="reserved"):
        terminology_string(("SCT", "1", "a~b"), ("SCT", "2", "x"))


def test_add_never_drops_existing_segment():
    seg = Segmentation(_ref())
    a = seg.add(Segment("liver", _mask(), LIVER))
    with pytest.raises(SegmentationError, match="already exists"):
        seg.add(Segment("liver", _mask(sl=np.s_[4:, :, :])))
    assert seg.names == ["liver"] and seg["liver"] is a
    renamed = seg.add(Segment("liver", _mask(sl=np.s_[4:, :, :])), on_conflict="rename")
    assert renamed.name == "liver (2)" and len(seg) == 2
    old = seg.replace(Segment("liver", _mask(sl=np.s_[0, 0, 0])))
    assert old is a and seg["liver"].voxel_count == 1 and seg["liver"].color == a.color
    with pytest.raises(SegmentationError, match="to replace"):
        seg.replace(Segment("spleen", _mask()))
    assert seg.remove("liver (2)").name == "liver (2)" and seg.names == ["liver"]


def test_segment_validation():
    seg = Segmentation(_ref())
    with pytest.raises(SegmentationError, match="differs from the reference grid"):
        seg.add(Segment("x", np.zeros((2, 2, 2), bool)))
    with pytest.raises(SegmentationError, match="not boolean"):
        Segment("x", np.full((2, 2, 2), 3, np.uint8))
    with pytest.raises(SegmentationError, match="colour"):
        Segment("x", np.zeros((2, 2, 2), bool), color=(1.0, 2.0, 0.0))
    with pytest.raises(SegmentationError, match="probability"):
        Segment("x", np.zeros((2, 2, 2), bool), probability=np.zeros((2, 2, 3)))
    with pytest.raises(SegmentationError, match="name"):
        Segment("", np.zeros((2, 2, 2), bool))
    with pytest.raises(TerminologyError):
        Segment("x", np.zeros((2, 2, 2), bool), terminology="nonsense")
    assert Segment("x", np.ones((2, 2, 2), np.uint8)).mask.dtype == bool


def test_layers_keep_overlaps_apart():
    seg = Segmentation(_ref())
    seg.add(Segment("a", _mask(sl=np.s_[0:3, :, :])))
    seg.add(Segment("b", _mask(sl=np.s_[2:5, :, :])))   # overlaps a
    seg.add(Segment("c", _mask(sl=np.s_[5:, :, :])))    # fits beside a
    layers, where = seg.to_layers()
    assert len(layers) == 2 and where == [(0, 1), (1, 1), (0, 2)]
    for s, (li, lv) in zip(seg, where):
        assert np.array_equal(layers[li] == lv, s.mask)
    assert seg.overlaps() == [("a", "b", 20)]
