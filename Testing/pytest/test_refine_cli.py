"""``textseg refine`` end to end on small synthetic files."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk

from TextSegLib.cli.main import main
from TextSegLib.refine.algorithms import growcut_available

from _refine_helpers import dice, two_spheres

pytestmark = pytest.mark.skipif(not growcut_available(), reason="slicer-core (GrowCut) not installed")


def _write(path, array_ijk, spacing=(1.0, 1.0, 1.0), origin=(10.0, -5.0, 30.0)):
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)  # LPS
    sitk.WriteImage(img, str(path))


def _read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


@pytest.fixture()
def files(tmp_path):
    vol, a, b = two_spheres()
    labels = np.zeros(vol.shape, np.uint8)
    labels[a] = 3
    labels[18:22, 2:5, 2:5] = 7  # another label that must survive
    _write(tmp_path / "ct.nii.gz", vol.array)
    _write(tmp_path / "seg.nii.gz", labels)
    return tmp_path, a, b, labels


def test_cli_positive_click_edits_one_label(files, capsys):
    tmp, a, b, labels = files
    seg = tmp / "seg.nii.gz"
    digest = hashlib.sha256(seg.read_bytes()).hexdigest()
    out = tmp / "out.nii.gz"
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(seg), "--label", "3", "--pos", "34,20,18", "--ijk", "-o", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    result = _read(out)
    assert dice(result == 3, a | b) > 0.95
    assert np.count_nonzero(result == 7) == np.count_nonzero(labels == 7)
    assert summary["changed_voxels"] > 1000 and summary["changed_box"] is not None
    assert hashlib.sha256(seg.read_bytes()).hexdigest() == digest  # input untouched


def test_cli_ras_click_matches_ijk(files, capsys):
    tmp, a, b, labels = files
    # voxel (34, 20, 18) -> LPS origin (10, -5, 30) + ijk -> RAS (-(10+34), -(-5+20), 30+18)
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(tmp / "seg.nii.gz"), "--label", "3",
               "--pos", "-44,-15,48", "-o", str(tmp / "ras.nii.gz")])
    assert rc == 0
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(tmp / "seg.nii.gz"), "--label", "3",
               "--pos", "34,20,18", "--ijk", "-o", str(tmp / "ijk.nii.gz")])
    assert rc == 0
    np.testing.assert_array_equal(_read(tmp / "ras.nii.gz"), _read(tmp / "ijk.nii.gz"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pos", "34,20,18", "--ijk"], "labels"),  # multi-label file without --label
        (["--label", "9", "--pos", "34,20,18", "--ijk"], "label 9 is not present"),
        (["--label", "3", "--pos", "340,20,18", "--ijk"], "outside the volume"),
        (["--label", "3", "--box", "1,2,3", "--ijk"], "6 are needed"),
        (["--label", "3"], "at least one"),
    ],
)
def test_cli_errors_are_one_line(files, capsys, extra, message):
    tmp, *_ = files
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(tmp / "seg.nii.gz"), *extra, "-o", str(tmp / "o.nii.gz")])
    err = capsys.readouterr().err
    assert rc != 0 and message in err and "Traceback" not in err
    assert not (tmp / "o.nii.gz").exists()


def test_cli_never_overwrites(files, capsys):
    tmp, *_ = files
    seg = tmp / "seg.nii.gz"
    before = seg.read_bytes()
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(seg), "--label", "3", "--pos", "34,20,18", "--ijk", "-o", str(seg),
               "--overwrite"])
    assert rc != 0 and "input mask" in capsys.readouterr().err
    (tmp / "exists.nii.gz").write_bytes(b"x")
    rc = main(["refine", str(tmp / "ct.nii.gz"), str(seg), "--label", "3", "--pos", "34,20,18", "--ijk",
               "-o", str(tmp / "exists.nii.gz")])
    assert rc != 0 and "already exists" in capsys.readouterr().err
    assert seg.read_bytes() == before and (tmp / "exists.nii.gz").read_bytes() == b"x"
