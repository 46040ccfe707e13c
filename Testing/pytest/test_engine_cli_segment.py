"""Acceptance: `textseg segment` end to end on the fixture CT with a small-config SAT checkpoint."""
from __future__ import annotations

import numpy as np
import pytest

from _engine_helpers import find_data, make_model_folder, read_nifti
from TextSegLib.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "small")


def test_segment_fixture_ct_end_to_end(model_dir, tmp_path, monkeypatch, capsys):
    from TextSegLib.io import read_seg_nrrd

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    ct = find_data("example_ct_sm.nii.gz")
    out = tmp_path / "out.seg.nrrd"
    assert main(["models", "register", "small", str(model_dir)]) == 0
    rc = main(["segment", str(ct), "-p", "liver", "-p", "left kidney", "--model", "small", "--device", "cpu",
               "--modality", "ct", "-o", str(out), "--nifti"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert out.exists() and (tmp_path / "out.nii.gz").exists()
    src = read_nifti(ct, "ct")
    seg = read_seg_nrrd(out)
    assert seg.shape == src.shape
    assert np.allclose(seg.ijk_to_ras, src.ijk_to_ras, atol=1e-4)
    assert seg.names == ["Liver", "Left kidney"]  # named by the preferred term
    assert all(s.mask.any() for s in seg)  # formula weights saturate: mostly foreground
    assert all(s.color is not None for s in seg)
    try:  # the knowledge tree (another area) supplies coded terminology when present
        from TextSegLib.knowledge import resolve  # noqa: F401
        assert "Liver" in seg["Liver"].terminology
    except ImportError:
        pass
    assert "6 of 6 tiles" in err or "tiles run" in err
    # never overwrite: the same command again fails cleanly
    rc = main(["segment", str(ct), "-p", "liver", "--model-path", str(model_dir), "--device", "cpu",
               "--modality", "ct", "-o", str(out), "--quiet"])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_segment_reports_bad_requests(model_dir, tmp_path, capsys):
    ct = find_data("example_ct_sm.nii.gz")
    rc = main(["segment", str(ct), "-p", "gallbladder", "--model-path", str(model_dir), "--device", "cpu",
               "--modality", "ct", "-o", str(tmp_path / "a.seg.nrrd"), "--quiet"])
    err = capsys.readouterr().err  # a query-table model knows only its terms: refused, nearest suggested
    assert rc == 2 and "not a structure" in err and "Liver" in err, err
    rc = main(["segment", str(ct), "-p", "liver", "--model-path", str(model_dir), "--device", "cpu",
               "--roi", "1,2,3", "-o", str(tmp_path / "b.seg.nrrd"), "--quiet"])
    assert rc == 2 and "six numbers" in capsys.readouterr().err
    rc = main(["segment", str(ct), "-p", "liver", "--model-path", str(model_dir), "--device", "tpu",
               "-o", str(tmp_path / "c.seg.nrrd"), "--quiet"])
    assert rc == 2 and "Unknown device" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.seg.nrrd"))


def test_default_model_is_the_bundled_one(tmp_path, monkeypatch, capsys):
    """Without --model and without an installed SAT model, the bundled textseg-mini is used."""
    from TextSegLib.errors import ModelError
    from TextSegLib.models import catalog

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TEXTSEG_MODEL", raising=False)
    assert catalog.default_model_name() == "textseg-mini"
    try:
        catalog.model_path("textseg-mini")
    except ModelError as exc:
        pytest.skip(f"bundled model not built: {exc}")
    ct = find_data("example_ct_sm.nii.gz")
    src = read_nifti(ct, "ct")
    lo, hi = src.ijk_to_ras_points([[40, 30, 5], [80, 70, 25]])  # a box keeps the test to a few tiles
    roi = ",".join(f"{v:.2f}" for v in list(lo) + list(hi))
    out = tmp_path / "mini.seg.nrrd"
    rc = main(["segment", str(ct), "-p", "liver", "--device", "cpu", "--modality", "ct", f"--roi={roi}",
               "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    from TextSegLib.io import read_seg_nrrd

    seg = read_seg_nrrd(out)
    assert seg.shape == read_nifti(ct).shape and seg.names == ["Liver"]


def test_segment_with_roi_leaves_the_rest_empty(model_dir, tmp_path, capsys):
    from TextSegLib.io import read_seg_nrrd

    ct = find_data("example_ct_sm.nii.gz")
    src = read_nifti(ct, "ct")
    lo = src.ijk_to_ras_points([[50, 40, 10]])[0]
    hi = src.ijk_to_ras_points([[70, 60, 20]])[0]
    out = tmp_path / "roi.seg.nrrd"
    roi = ",".join(f"{v:.2f}" for v in list(lo) + list(hi))
    rc = main(["segment", str(ct), "-p", "liver", "--model-path", str(model_dir), "--device", "cpu",
               "--modality", "ct", f"--roi={roi}", "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    mask = read_seg_nrrd(out)["Liver"].mask
    inside = np.zeros(mask.shape, bool)
    inside[49:72, 39:62, 9:22] = True  # the box plus one voxel of interpolation margin
    assert mask.any() and not mask[~inside].any()
