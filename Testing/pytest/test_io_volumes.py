"""Reading and writing volumes: fixtures, DICOM, output paths, Slicer convention."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from TextSegLib.errors import DicomSeriesError, OutputPathError
from TextSegLib.io import from_sitk, list_series, read_volume, to_sitk, write_volume
from TextSegLib.volume import Volume

from _io_helpers import BAD, SLICERIO, TS, small_volume


def test_nifti_fixture_matches_sitk_lps_geometry():
    path = TS / "example_ct_sm.nii.gz"
    vol = read_volume(path)
    img = sitk.ReadImage(str(path))
    assert vol.shape == img.GetSize()
    assert np.allclose(vol.origin, [-img.GetOrigin()[0], -img.GetOrigin()[1], img.GetOrigin()[2]])
    assert np.allclose(vol.spacing, img.GetSpacing())
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    # voxel (i,j,k) -> RAS must agree with ITK's index -> LPS
    idx = (7, 11, 3)
    lps = img.TransformIndexToPhysicalPoint(idx)
    assert np.allclose(vol.ijk_to_ras_points(idx)[0], [-lps[0], -lps[1], lps[2]])
    assert vol.modality == "ct" and "air" in vol.meta["modality_reason"]


def test_mr_fixture_guessed_mri_and_override():
    assert read_volume(TS / "example_mr_sm.nii.gz").modality == "mri"
    vol = read_volume(TS / "example_mr_sm.nii.gz", modality="CT")
    assert vol.modality == "ct" and vol.meta["modality_reason"] == "given by the user"


def test_nrrd_fixture_geometry():
    vol = read_volume(SLICERIO / "CTChest4.nrrd")
    assert vol.shape == (128, 128, 34)
    # header: LPS space origin (193.096, 216.396, -340.25), directions -3.0469, -3.0469, 10
    assert np.allclose(vol.origin, [-193.09599304, -216.39599609, -340.25])
    assert np.allclose(np.diag(vol.ijk_to_ras)[:3], [3.04687595, 3.04687595, 10.0])


def test_dicom_fixture_series_meta_and_modality():
    vol = read_volume(TS / "example_ct_dicom")
    assert vol.shape == (512, 512, 20)
    assert np.allclose(vol.spacing, [0.9765625, 0.9765625, 2.0])
    assert vol.modality == "ct" and "Modality tag" in vol.meta["modality_reason"]
    assert vol.meta["Modality"] == "CT" and vol.meta["SeriesDescription"] == "CT Body 3.0"
    assert len(vol.meta["dicom_files"]) == 20
    assert vol.array.min() == -1024  # rescale intercept applied
    # slices sorted inferior -> superior: z of the last slice is the highest
    zs = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in vol.meta["dicom_files"]]
    assert zs == sorted(zs) and vol.origin[2] == pytest.approx(zs[0])


def test_dicom_fixture_same_grid_as_reference_segmentation():
    """example_seg_dicom.nii.gz lies on the DICOM grid with its J axis reversed."""
    ct = read_volume(TS / "example_ct_dicom")
    seg = read_volume(TS / "example_seg_dicom.nii.gz", modality="ct")
    assert seg.shape == ct.shape
    assert not np.allclose(seg.ijk_to_ras, ct.ijk_to_ras)
    # the same physical voxel centres: seg voxel (i, J-1-j, k) == ct voxel (i, j, k)
    ijk = np.array([[0, 0, 0], [511, 0, 19], [100, 200, 7]])
    flipped = ijk.copy()
    flipped[:, 1] = 511 - flipped[:, 1]
    assert np.allclose(ct.ijk_to_ras_points(ijk), seg.ijk_to_ras_points(flipped), atol=1e-4)
    # with the flip the labels sit on the body (1.9% air); without it 27% of labelled voxels are air
    labels = seg.array[:, ::-1, :]
    assert (labels > 0).sum() > 1000
    assert np.mean(ct.array[labels > 0] < -500) < 0.05
    assert np.mean(ct.array[seg.array > 0] < -500) > 0.2


def test_two_series_pick_by_uid_and_listing():
    series = list_series(BAD / "dicom_two_series")
    assert sorted(len(s.files) for s in series) == [2, 3]
    b = next(s for s in series if s.description == "copy B")
    vol = read_volume(BAD / "dicom_two_series", series_uid=b.uid)
    assert vol.shape == (16, 16, 3) and vol.meta["SeriesInstanceUID"] == b.uid
    assert vol.meta["PatientID"] == "TEXTSEG-BAD-INPUT" and len(vol.meta["SOPInstanceUIDs"]) == 3
    with pytest.raises(DicomSeriesError, match="no series with UID"):
        read_volume(BAD / "dicom_two_series", series_uid="1.2.3")


def test_dicom_uneven_spacing_names_gaps():
    with pytest.raises(DicomSeriesError) as err:
        read_volume(BAD / "dicom_uneven_spacing")
    assert "2, 6 mm" in str(err.value)


def test_dicom_duplicate_positions(tmp_path):
    src = sorted((BAD / "dicom_two_series").glob("b*.dcm"))
    for n, f in enumerate(src):
        shutil.copy(f, tmp_path / f"x{n}.dcm")
    ds = pydicom.dcmread(src[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "dup.dcm")
    with pytest.raises(DicomSeriesError, match="share a position"):
        read_volume(tmp_path)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_read_roundtrip(tmp_path, ext):
    vol = small_volume(np.random.default_rng(1), left_handed=True)
    out = write_volume(vol, tmp_path / f"v{ext}")
    back = read_volume(out, modality="ct")
    assert np.array_equal(back.array, vol.array) and back.array.dtype == vol.array.dtype
    atol = 1e-4 if ext.startswith(".nii") else 1e-9
    assert np.allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=atol)


def test_write_never_overwrites(tmp_path):
    vol = small_volume(np.random.default_rng(2))
    p = write_volume(vol, tmp_path / "v.nrrd")
    before = p.read_bytes()
    with pytest.raises(OutputPathError, match="already exists"):
        write_volume(vol.with_array(vol.array * 0), p)
    assert p.read_bytes() == before
    write_volume(vol.with_array(vol.array * 0), p, overwrite=True)
    assert read_volume(p, modality="ct").array.max() == 0


@pytest.mark.parametrize("target,phrase", [
    ("missing_dir/v.nii.gz", "does not exist"),
    ("v.png", "cannot write file type"),
    (".", "is a folder"),
])
def test_write_bad_output_paths(tmp_path, target, phrase):
    vol = small_volume(np.random.default_rng(3))
    with pytest.raises(OutputPathError, match=phrase):
        write_volume(vol, tmp_path / target)
    assert not (tmp_path / "missing_dir").exists()


def test_write_unwritable_folder():
    vol = small_volume(np.random.default_rng(4))
    with pytest.raises(OutputPathError, match="not writable|does not exist"):
        write_volume(vol, "/proc/textseg-test.nii.gz")


def test_sitk_roundtrip_and_slicer_convention():
    vol = small_volume(np.random.default_rng(5), left_handed=True)
    img = to_sitk(vol)
    assert img.GetSize() == vol.shape
    back = from_sitk(img, modality="ct")
    assert np.array_equal(back.array, vol.array) and np.allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-12)
    kji, m = vol.to_slicer()
    assert kji.shape == vol.shape[::-1] and kji[2, 1, 0] == vol.array[0, 1, 2]
    assert np.array_equal(sitk.GetArrayViewFromImage(img), kji)
    again = Volume.from_slicer(kji, m)
    assert np.array_equal(again.array, vol.array) and np.array_equal(again.ijk_to_ras, vol.ijk_to_ras)


def test_read_does_not_modify_input(tmp_path):
    src = TS / "example_seg_mr.nii.gz"
    data = src.read_bytes()
    read_volume(src)
    assert src.read_bytes() == data


def test_dicom_corrupt_slice_is_reported_not_hidden(tmp_path):
    for f in sorted((BAD / "dicom_two_series").glob("b*.dcm")):
        shutil.copy(f, tmp_path / f.name)
    data = (tmp_path / "b1.dcm").read_bytes()
    (tmp_path / "b1.dcm").write_bytes(data[:1000])  # GDCM cannot parse it any more
    vol = read_volume(tmp_path)
    assert vol.meta["skipped_files"] == ["b1.dcm"] and vol.shape[2] == 2
    assert read_volume(TS / "example_ct_dicom").meta["skipped_files"] == []


def test_itk_stderr_is_captured_not_printed(tmp_path, capfd):
    from TextSegLib.errors import InputFileError

    vol = small_volume(np.random.default_rng(6))
    data = write_volume(vol, tmp_path / "v.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(data[: len(data) - 40])
    capfd.readouterr()
    with pytest.raises(InputFileError, match="truncated"):
        read_volume(tmp_path / "cut.mha")
    out, err = capfd.readouterr()
    assert "MetaImage" not in err and out == ""
    assert not list(tmp_path.glob(".textseg-*"))  # no temporary files left behind


def test_dicom_gantry_tilt_rejected(tmp_path):
    for n, f in enumerate(sorted((BAD / "dicom_two_series").glob("b*.dcm"))):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.35 * n * 2.0, z]  # ~19° tilt in y-z
        ds.save_as(tmp_path / f.name)
    with pytest.raises(DicomSeriesError, match="sheared"):
        read_volume(tmp_path)


def test_ras_geometry_agrees_with_nibabel(tmp_path):
    """An independent reader (nibabel's RAS affine) sees the same geometry, also for oblique files we write."""
    nib = pytest.importorskip("nibabel")
    path = TS / "example_ct_sm.nii.gz"
    assert np.allclose(read_volume(path).ijk_to_ras, nib.load(str(path)).affine, atol=1e-4)
    vol = small_volume(np.random.default_rng(8), left_handed=True)
    out = write_volume(vol, tmp_path / "oblique.nii.gz")
    img = nib.load(str(out))
    assert np.allclose(img.affine, vol.ijk_to_ras, atol=1e-4)
    assert np.array_equal(np.asarray(img.dataobj), vol.array)


def test_written_files_have_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    p = write_volume(small_volume(np.random.default_rng(9)), tmp_path / "p.nii.gz")
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_dicom_per_slice_rescale_slopes_kept(tmp_path):
    """PET-style series: each slice has its own fractional slope; values must not be truncated."""
    for slope, f in zip((0.5, 1.5, 2.25), sorted((BAD / "dicom_two_series").glob("b*.dcm"))):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.PixelData = np.full((16, 16), 100, np.uint16).tobytes()
        ds.save_as(tmp_path / f.name)
    vol = read_volume(tmp_path)
    assert vol.array.dtype.kind == "f"
    assert [float(vol.array[3, 4, k]) for k in range(3)] == [50.0, 150.0, 225.0]


def test_dicom_mixed_slice_sizes_rejected(tmp_path):
    for n, f in enumerate(sorted((BAD / "dicom_two_series").glob("b*.dcm"))):
        ds = pydicom.dcmread(f)
        if n == 1:
            ds.Rows = ds.Columns = 8
            ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
        ds.save_as(tmp_path / f.name)
    with pytest.raises(DicomSeriesError, match="different sizes"):
        read_volume(tmp_path)
