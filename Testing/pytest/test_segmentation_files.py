"""Segmentation files: .seg.nrrd (slicerio + real Slicer MRML reader) and NIfTI label maps."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import slicerio

from TextSegLib.errors import InputFileError, OutputPathError
from TextSegLib.io import read_seg_nrrd, read_volume, write_nifti_labels, write_seg_nrrd
from TextSegLib.segmentation import Segment, Segmentation, terminology_string
from TextSegLib.volume import Volume, make_ijk_to_ras

from _io_helpers import SLICERIO, random_rotation

ANAT = ("SCT", "123037004", "Anatomical Structure")


def _segmentation() -> Segmentation:
    """Oblique, anisotropic grid; 'lesion' overlaps 'liver'; 'empty' has no voxels."""
    rng = np.random.default_rng(7)
    ref = Volume(np.zeros((12, 10, 6), np.int16),
                 make_ijk_to_ras([0.7, 0.9, 2.5], [-120.5, 33.25, 80.0], random_rotation(rng)))
    liver = np.zeros(ref.shape, bool); liver[2:8, 2:7, 1:5] = True
    lesion = np.zeros(ref.shape, bool); lesion[4:6, 3:5, 2:4] = True
    lung = np.zeros(ref.shape, bool); lung[9:12, 0:4, 0:6] = True
    seg = Segmentation(ref)
    seg.add(Segment("liver", liver, terminology_string(ANAT, ("SCT", "10200004", "Liver")),
                    (0.87, 0.51, 0.40), concept_id="SCT:10200004"))
    seg.add(Segment("lesion", lesion, terminology_string(
        ("SCT", "49755003", "Morphologically Altered Structure"), ("SCT", "4147007", "Mass"),
        anatomic_region=("SCT", "10200004", "Liver")), (1.0, 0.0, 0.0)))
    seg.add(Segment("right lung", lung, terminology_string(ANAT, ("SCT", "39607008", "Lung"),
                                                           ("SCT", "24028007", "Right")), (0.1, 0.77, 0.28)))
    seg.add(Segment("empty", np.zeros(ref.shape, bool)))
    return seg


def test_seg_nrrd_roundtrip(tmp_path):
    seg = _segmentation()
    p = write_seg_nrrd(seg, tmp_path / "out.seg.nrrd")
    back = read_seg_nrrd(p)
    assert back.names == seg.names
    assert np.allclose(back.ijk_to_ras, seg.ijk_to_ras, atol=1e-9)
    for a, b in zip(seg, back):
        assert np.array_equal(a.mask, b.mask), a.name
        assert a.terminology == b.terminology and np.allclose(a.color, b.color)
    assert back["liver"].concept_id == "SCT:10200004"
    raw = slicerio.read_segmentation(str(p))
    assert raw["voxels"].shape == (2, 12, 10, 6)  # overlap -> second layer, not merged
    with pytest.raises(OutputPathError, match="already exists"):
        write_seg_nrrd(seg, p)


def test_seg_nrrd_read_by_slicer_core(tmp_path):
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    seg = _segmentation()
    p = write_seg_nrrd(seg, tmp_path / "out.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(p))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(seg)
    for n, ours in enumerate(seg):
        s = segmentation.GetNthSegment(n)
        assert s.GetName() == ours.name
        assert np.allclose(s.GetColor(), ours.color, atol=1e-5)
        tag = vtk.reference("")
        if ours.terminology:
            assert s.GetTag("TerminologyEntry", tag) and str(tag) == ours.terminology
        lm = s.GetRepresentation("Binary labelmap")
        mat = vtk.vtkMatrix4x4()
        lm.GetImageToWorldMatrix(mat)  # Slicer's world is RAS
        assert np.allclose([[mat.GetElement(r, c) for c in range(4)] for r in range(4)], seg.ijk_to_ras, atol=1e-6)
        labels = vtk_to_numpy(lm.GetPointData().GetScalars())
        assert int(np.count_nonzero(labels == s.GetLabelValue())) == ours.voxel_count, ours.name


def test_read_slicerio_fixture_and_geometry_matches_ct():
    seg = read_seg_nrrd(SLICERIO / "Segmentation.seg.nrrd")
    assert len(seg) == 7
    assert seg.names[:2] == ["ribs", "cervical vertebral column"] and "left lung" in seg
    assert all(s.terminology_entry().type[0] == "SCT" for s in seg)
    assert seg["right lung"].terminology_entry().type_modifier == ("SCT", "24028007", "Right")
    assert seg["left lung"].voxel_count > 1000 and seg["ribs"].voxel_count > 0
    ct = read_volume(SLICERIO / "CTChest4.nrrd")
    assert seg.shape == ct.shape and np.allclose(seg.ijk_to_ras, ct.ijk_to_ras, atol=1e-4)
    # lungs are air: their CT values are far below soft tissue
    assert np.median(ct.array[seg["left lung"].mask]) < -500


def test_read_seg_nrrd_rejects_plain_volume():
    with pytest.raises(InputFileError, match="no Slicer segment"):
        read_seg_nrrd(SLICERIO / "CTChest4.nrrd")


def test_nifti_labels_with_overlap_layers_and_csv(tmp_path):
    seg = _segmentation()
    files = write_nifti_labels(seg, tmp_path / "labels.nii.gz")
    assert [f.name for f in files] == ["labels.nii.gz", "labels_layer2.nii.gz", "labels_labels.csv"]
    layer1 = read_volume(files[0], modality="ct")
    layer2 = read_volume(files[1], modality="ct")
    assert np.allclose(layer1.ijk_to_ras, seg.ijk_to_ras, atol=1e-4)
    rows = list(csv.DictReader(open(files[2], encoding="utf-8")))
    assert [r["name"] for r in rows] == seg.names
    for row, s in zip(rows, seg):
        arr = layer1.array if row["file"] == "labels.nii.gz" else layer2.array
        assert np.array_equal(arr == int(row["label"]), s.mask), s.name
        assert int(row["voxels"]) == s.voxel_count
    liver = rows[0]
    assert liver["type"] == "SCT^10200004^Liver" and liver["concept_id"] == "SCT:10200004"
    assert rows[1]["file"] == "labels_layer2.nii.gz" and rows[1]["anatomic_region"] == "SCT^10200004^Liver"
    assert rows[2]["type_modifier"] == "SCT^24028007^Right"


def test_nifti_labels_checks_all_paths_first(tmp_path):
    (tmp_path / "labels_labels.csv").write_text("precious")
    with pytest.raises(OutputPathError, match="already exists"):
        write_nifti_labels(_segmentation(), tmp_path / "labels.nii.gz")
    assert not (tmp_path / "labels.nii.gz").exists()
    assert (tmp_path / "labels_labels.csv").read_text() == "precious"
