"""``textseg info``: text and JSON output for files and DICOM folders."""
from __future__ import annotations

import json

import numpy as np
import pytest

from TextSegLib.cli.info import orientation_code
from TextSegLib.cli.main import main
from TextSegLib.io import list_series

from _io_helpers import BAD, SLICERIO, TS


def _json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_nifti(capsys):
    info = _json(capsys, str(TS / "example_ct_sm.nii.gz"))
    assert info["shape"] == [122, 101, 30] and info["spacing_mm"] == [3.0, 3.0, 3.0]
    assert info["modality"] == "ct" and "HU" in info["modality_reason"]
    assert info["dtype"] in ("int16", "float32", "float64", "int32", "uint8", "int8", "uint16")
    assert info["min"] <= info["percentiles"]["p50"] <= info["max"]
    assert info["orientation"] in ("LPS", "RAS", "LAS", "RPS") and not info["oblique"]


def test_info_json_dicom_and_text(capsys):
    info = _json(capsys, str(TS / "example_ct_dicom"))
    assert info["orientation"] == "LPS" and info["modality_reason"] == "DICOM Modality tag is 'CT'"
    assert info["SeriesDescription"] == "CT Body 3.0"
    assert info["size_mb"] == pytest.approx(512 * 512 * 20 * 2 / 1e6, rel=1e-3)
    capsys.readouterr()
    assert main(["info", str(SLICERIO / "CTChest4.nrrd")]) == 0
    out = capsys.readouterr().out
    assert "128 x 128 x 34" in out and "orientation  RAS" in out and "modality     ct" in out


def test_info_series_uid_and_modality_override(capsys):
    uid = next(s.uid for s in list_series(BAD / "dicom_two_series") if s.description == "copy A")
    info = _json(capsys, str(BAD / "dicom_two_series"), "--series-uid", uid, "--modality", "mri")
    assert info["shape"] == [16, 16, 2] and info["modality"] == "mri"


def test_orientation_code():
    assert orientation_code(np.eye(3)) == "RAS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0])) == "LPS"
    assert orientation_code(np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]])) == "AIL"


def test_info_seg_nrrd(capsys):
    info = _json(capsys, str(SLICERIO / "Segmentation.seg.nrrd"))
    assert info["shape"] == [128, 128, 34] and len(info["segments"]) == 7
    right = next(s for s in info["segments"] if s["name"] == "right lung")
    assert right["type"] == "SCT^39607008^Lung" and right["type_modifier"] == "SCT^24028007^Right"
    assert right["voxels"] > 1000
    capsys.readouterr()
    assert main(["info", str(SLICERIO / "Segmentation.seg.nrrd")]) == 0
    assert "SCT^39607008^Lung (Right)" in capsys.readouterr().out
