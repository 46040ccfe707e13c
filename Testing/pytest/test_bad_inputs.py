"""Every file of the bad-input corpus fails with its own error class and message.

The corpus lives in ``Testing/Data/bad_inputs`` (regenerate it with
``make_bad_inputs.py`` there). Each case also runs ``textseg info`` and checks
for one error line, no traceback and a non-zero exit code.
"""
from __future__ import annotations

import pytest

from TextSegLib.cli.main import main
from TextSegLib.errors import DicomSeriesError, GeometryError, InputFileError, VolumeTooLargeError
from TextSegLib.io import read_volume

from _io_helpers import BAD, TS

CASES = [
    ("does_not_exist.nii.gz", InputFileError, "no such file"),
    ("empty.nii.gz", InputFileError, "empty (0 bytes)"),
    ("truncated.nii.gz", InputFileError, "truncated"),
    ("truncated.nrrd", InputFileError, "truncated"),
    ("truncated.mha", InputFileError, "truncated"),
    ("corrupt_header.nrrd", InputFileError, "NRRD header is corrupt"),
    ("text_named.nii", InputFileError, "not a recognised image format"),
    ("unsupported_extension.png", InputFileError, "is not supported"),
    ("image_2d.nii.gz", InputFileError, "2D image"),
    ("image_4d.nii.gz", InputFileError, "4D image"),
    ("rgb_multicomponent.nrrd", InputFileError, "3 components per voxel"),
    ("zero_spacing.nrrd", GeometryError, "zero, negative"),
    ("negative_spacing.mha", GeometryError, "zero, negative"),
    ("singular_direction.nrrd", GeometryError, "direction matrix is singular"),
    ("nan_voxels.nrrd", InputFileError, "NaN or Inf"),
    ("inf_voxels.nii.gz", InputFileError, "NaN or Inf"),
    ("huge_header.nhdr", VolumeTooLargeError, "TEXTSEG_MAX_VOXELS"),
    ("missing_data_file.nhdr", InputFileError, "data file 'missing_data_file.raw' is missing"),
    ("data_file_outside.nhdr", InputFileError, "'/etc/passwd' lies outside the header's folder"),
    ("data_file_escape.nhdr", InputFileError, "lies outside the header's folder"),
    ("data_file_device.nhdr", InputFileError, "'/dev/zero' lies outside the header's folder"),
    ("data_file_folder.nhdr", InputFileError, "'empty_folder' is a folder, not a file"),
    ("dicom_two_series", DicomSeriesError, "holds 2 series"),
    ("dicom_two_modalities", DicomSeriesError, "one series mixes 2 modalities (CT: 2 slice(s), e.g. m0.dcm; MR: 1"),
    ("dicom_two_frames", DicomSeriesError, "one series mixes 2 frames of reference"),
    ("dicom_uneven_spacing", DicomSeriesError, "unevenly spaced"),
    ("dicom_no_images", DicomSeriesError, "no image series"),
    ("not_dicom_folder", DicomSeriesError, "is not a DICOM folder"),
    ("empty_folder", DicomSeriesError, "folder is empty"),
    # issue 22: wrong geometry or data that readers repair silently, internal errors, misleading messages
    ("dicom_nan_position", DicomSeriesError, "ImagePositionPatient (0020,0032) is 'nan\\\\nan\\\\nan', not 3 finite"),
    ("dicom_zero_pixel_spacing", DicomSeriesError, "PixelSpacing is '0.0\\\\0.0'; both values must be > 0 mm"),
    ("dicom_short_pixel_data", DicomSeriesError, "s1.dcm in"),
    ("dicom_monochrome1", DicomSeriesError, "PhotometricInterpretation is MONOCHROME1"),
    ("dicom_bad_rescale", DicomSeriesError, "RescaleSlope (0028,1053) is 'abc', not 1 finite number"),
    ("dicom_tiny_spacing", DicomSeriesError, "the slices are only 1e-06 mm apart"),
    ("dicom_500mm_spacing", GeometryError, "spacing 0.976562 x 0.976562 x 500 mm is not that of a scan"),
    ("dicom_zero_orientation", DicomSeriesError, "is not two perpendicular unit vectors"),
    ("dicom_corrupt_jpeg", DicomSeriesError, "compressed pixel data (JPEG Baseline (1.2.840.10008.1.2.4.50)) cannot be decoded"),
    ("dicom_htj2k", DicomSeriesError, "(transfer syntax 1.2.840.10008.1.2.4.201), which TextSeg's DICOM reader"),
    ("nifti_pixdim_inf.nii.gz", GeometryError, "spacing (pixdim) (inf, 1.0, 2.0) has a zero, infinite"),
    ("nifti_500mm_spacing.nii.gz", GeometryError, "spacing 500 x 500 x 500 mm is not that of a scan"),
    ("nifti_dim_zero.nii", InputFileError, "dim[0] (the number of dimensions) is 0"),
    ("nifti2.nii", InputFileError, "NIfTI-2 is not supported"),
    ("nifti_quaternion_not_unit.nii", GeometryError, "is not a unit quaternion"),
    ("nifti_float16_as_float32.nii", InputFileError, "far beyond any scan's range"),
    ("segmentation_as_scan.nrrd", InputFileError, "is a Slicer segmentation (.seg.nrrd), not a scan"),
    # a .seg.nrrd goes through the same header checks for `textseg info` (read_seg_nrrd) as for read_volume
    ("seg_data_file_outside.seg.nrrd", InputFileError, "'/etc/passwd' lies outside the header's folder"),
    ("seg_huge_header.seg.nrrd", VolumeTooLargeError, "TEXTSEG_MAX_VOXELS"),
]
#: cases that today's readers would turn into gigabytes: run in a subprocess with bounded memory.
BOUNDED = [
    ("dicom_huge_rows", "holds 512 of the 800,000,000 pixel bytes its header declares (20000x20000 pixels"),
]


def test_corpus_is_complete_and_small():
    entries = {p.name for p in BAD.iterdir()} - {"make_bad_inputs.py", "__pycache__"}
    assert entries == ({name for name, _, _ in CASES} | {name for name, _ in BOUNDED}) - {"does_not_exist.nii.gz"}
    total = sum(p.stat().st_size for p in BAD.rglob("*") if p.is_file())
    assert total < 1_000_000


@pytest.mark.parametrize("name,exc,phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, exc, phrase, capsys):
    path = BAD / name
    with pytest.raises(exc) as err:
        read_volume(path)
    message = str(err.value)
    assert phrase in message
    assert name in message  # names the file or folder
    assert err.value.hint  # says what to do
    assert "sitk::" not in message and "itk::" not in message and ".cxx" not in message
    capsys.readouterr()
    code = main(["info", str(path)])
    out, errtext = capsys.readouterr()
    assert code != 0 and out == ""
    assert errtext.count("\n") == 1 and errtext.startswith("textseg: error:")
    assert "Traceback" not in errtext and phrase in errtext


def test_voxel_limit_from_environment(monkeypatch):
    monkeypatch.setenv("TEXTSEG_MAX_VOXELS", "1000")
    with pytest.raises(VolumeTooLargeError, match="exceed the limit of 1,000"):
        read_volume(TS / "example_mr_sm.nii.gz")
    monkeypatch.setenv("TEXTSEG_MAX_VOXELS", "1000")
    with pytest.raises(VolumeTooLargeError):
        read_volume(TS / "example_ct_dicom")


def test_series_uid_on_a_file():
    with pytest.raises(InputFileError, match="single file"):
        read_volume(TS / "example_mr_sm.nii.gz", series_uid="1.2.3")


def test_nrrd_data_file_that_is_a_pipe_or_a_symlink_out_is_refused(tmp_path):
    import os

    head = (BAD / "missing_data_file.nhdr").read_text().replace("missing_data_file.raw", "{}")
    os.mkfifo(tmp_path / "voxels.raw")
    (tmp_path / "pipe.nhdr").write_text(head.format("voxels.raw"))
    with pytest.raises(InputFileError, match="'voxels.raw' is a device, pipe or socket"):
        read_volume(tmp_path / "pipe.nhdr")
    (tmp_path / "link.raw").symlink_to("/etc/passwd")
    (tmp_path / "link.nhdr").write_text(head.format("link.raw"))
    with pytest.raises(InputFileError, match="lies outside the header's folder"):
        read_volume(tmp_path / "link.nhdr")
    (tmp_path / "ok.raw").write_bytes(bytes(4 * 4 * 3 * 2))
    (tmp_path / "ok.nhdr").write_text(head.format("ok.raw").replace("encoding: raw", "encoding: raw\nendian: little"))
    assert read_volume(tmp_path / "ok.nhdr", modality="ct").shape == (4, 4, 3)
