"""Regenerate the bad-input corpus of TextSeg (``python make_bad_inputs.py``).

Every file here is small and deliberately broken in one way; the expected
error of each is listed in ``Testing/pytest/test_bad_inputs.py``. The DICOM
cases are cropped (16×16) copies of slices of the TotalSegmentator fixture
series ``../totalsegmentator/example_ct_dicom`` with UIDs added.
"""
from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path
from typing import Callable

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
FIXTURE_DICOM = HERE.parent / "totalsegmentator" / "example_ct_dicom"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _noise(shape: tuple[int, ...], dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, size=shape).astype(dtype)


def _nifti(array: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(array, np.diag([-1.0, -1.0, 2.0, 1.0])), str(path))


def _nrrd(path: Path, array: np.ndarray, header: dict) -> None:
    """pynrrd's writer, minus its date comment (keeps the corpus byte-for-byte reproducible)."""
    nrrd.write(str(path), array, header)
    head, data = path.read_bytes().split(b"\n\n", 1)
    lines = [ln for ln in head.split(b"\n") if not ln.startswith(b"# on ")]
    path.write_bytes(b"\n".join(lines) + b"\n\n" + data)


def make_files(out: Path) -> None:
    (out / "empty.nii.gz").write_bytes(b"")
    (out / "text_named.nii").write_text("patient list\nthis is a text file, not a NIfTI image\n" * 4)
    (out / "unsupported_extension.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 24)
    # A valid .nii.gz cut in half: the header reads fine, the voxels end early.
    tmp = out / "_full.nii.gz"
    _nifti(_noise((16, 16, 8)), tmp)
    data = tmp.read_bytes()
    (out / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    tmp.unlink()
    tmp = out / "_full.nrrd"
    _nrrd(tmp, _noise((16, 16, 8)), {"encoding": "raw"})
    header, raw = tmp.read_bytes().split(b"\n\n", 1)
    data = header.replace(b"encoding: raw", b"encoding: gzip") + b"\n\n" + gzip.compress(raw, mtime=0)
    (out / "truncated.nrrd").write_bytes(data[: len(data) * 2 // 3])
    tmp.unlink()
    sitk.WriteImage(sitk.GetImageFromArray(_noise((8, 8, 8))), str(out / "_full.mha"), False)
    data = (out / "_full.mha").read_bytes()
    (out / "truncated.mha").write_bytes(data[: len(data) * 2 // 3])
    (out / "_full.mha").unlink()
    (out / "corrupt_header.nrrd").write_bytes(
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 5 banana\nencoding: raw\n\n" + b"\0" * 120
    )
    _nifti(_noise((8, 8)), out / "image_2d.nii.gz")
    _nifti(_noise((6, 6, 4, 3)), out / "image_4d.nii.gz")
    rgb = sitk.Image([4, 4, 3], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(out / "rgb_multicomponent.nrrd"), True)
    lps = {"space": "left-posterior-superior", "space origin": np.zeros(3), "encoding": "raw"}
    _nrrd(out / "zero_spacing.nrrd", _noise((4, 4, 3)),
               {**lps, "space directions": np.diag([1.0, 0.0, 1.0])})
    _nrrd(out / "singular_direction.nrrd", _noise((4, 4, 3)),
               {**lps, "space directions": np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])})
    (out / "negative_spacing.mha").write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 3\nElementSpacing = 1 -1 2\n"
        b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + _noise((3, 4, 4)).tobytes()
    )
    nan = _noise((4, 4, 3)).astype(np.float32)
    nan[1, 2, 0] = np.nan
    _nrrd(out / "nan_voxels.nrrd", nan, {**lps, "space directions": np.eye(3)})
    inf = _noise((4, 4, 3)).astype(np.float32)
    inf[0, 0, 2] = np.inf
    _nifti(inf, out / "inf_voxels.nii.gz")
    (out / "huge_header.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 2048 2048 2048\nencoding: raw\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
        "space origin: (0,0,0)\ndata file: huge_header.raw\n"
    )
    nhdr = ("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 3\nencoding: raw\n"
            "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\n")
    # detached data files that must not be followed: outside the folder, a ../ escape, a folder
    (out / "data_file_outside.nhdr").write_text(nhdr + "data file: /etc/passwd\n")
    (out / "data_file_escape.nhdr").write_text(nhdr + "data file: ../../../../etc/hostname\n")
    (out / "data_file_folder.nhdr").write_text(nhdr + "data file: empty_folder\n")
    (out / "data_file_device.nhdr").write_text(nhdr + "data file: /dev/zero\n")
    (out / "missing_data_file.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 3\nencoding: raw\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
        "space origin: (0,0,0)\ndata file: missing_data_file.raw\n"
    )


def _nifti_header_bytes(array: np.ndarray, path: Path, change: Callable[[bytearray], None]) -> None:
    """An uncompressed NIfTI-1 of ``array`` with raw header bytes changed (nibabel would refuse them)."""
    tmp = path.with_name("_" + path.name)
    nib.save(nib.Nifti1Image(array, np.diag([-1.0, -1.0, 2.0, 1.0])), str(tmp))
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    change(data)
    path.write_bytes(bytes(data))


def _pack(offset: int, fmt: str, *values) -> Callable[[bytearray], None]:
    def change(data: bytearray) -> None:
        data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    return change


def make_nifti_geometry(out: Path) -> None:
    """NIfTI headers ITK would repair silently or report misleadingly (issue 22)."""
    small = _noise((8, 8, 4))
    img = nib.Nifti1Image(small, np.diag([-1.0, -1.0, 2.0, 1.0]))
    img.header["pixdim"][1] = np.inf
    nib.save(img, str(out / "nifti_pixdim_inf.nii.gz"))
    nib.save(nib.Nifti1Image(small, np.diag([-500.0, -500.0, 500.0, 1.0])), str(out / "nifti_500mm_spacing.nii.gz"))
    _nifti_header_bytes(small, out / "nifti_dim_zero.nii", _pack(40, "<h", 0))
    nib.save(nib.Nifti2Image(small, np.diag([-1.0, -1.0, 2.0, 1.0])), str(out / "nifti2.nii"))

    def quaternion(data: bytearray) -> None:
        data[252:256] = struct.pack("<2h", 1, 0)  # qform_code 1, sform_code 0
        data[256:268] = struct.pack("<3f", 0.9, 0.9, 0.0)
    _nifti_header_bytes(small, out / "nifti_quaternion_not_unit.nii", quaternion)
    # float16 bytes (twice as many values) behind a header that says FLOAT32
    half = np.random.default_rng(0).normal(0, 100, size=8 * 8 * 8).astype(np.float16)

    def float16(data: bytearray) -> None:
        data[70:74] = struct.pack("<2h", 16, 32)
        data[352:] = half.tobytes()
    _nifti_header_bytes(small, out / "nifti_float16_as_float32.nii", float16)


def make_seg_nrrd(out: Path) -> None:
    """Slicer segmentations with a hostile header, and one given as a scan (issue 22, items 8, 10)."""
    seg = ("NRRD0004\ntype: unsigned char\ndimension: 3\nsizes: {sizes}\nencoding: raw\n"
           "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\n"
           "Segment0_ID:=Segment_1\nSegment0_Name:=liver\nSegment0_LabelValue:=1\nSegment0_Layer:=0\n"
           "Segment0_Extent:=0 3 0 3 0 2\n")
    (out / "seg_data_file_outside.seg.nrrd").write_text(seg.format(sizes="4 4 3") + "data file: /etc/passwd\n")
    (out / "seg_huge_header.seg.nrrd").write_bytes(seg.format(sizes="4096 4096 4096").encode() + b"\n" + bytes(64))
    (out / "segmentation_as_scan.nrrd").write_bytes(seg.format(sizes="4 4 3").encode() + b"\n" + bytes(48))


def _fixture_slices() -> list[tuple[Path, np.ndarray]]:
    """Fixture slice files sorted by z, each with a 16×16 crop of its stored pixel values."""
    out = []
    for f in sorted(FIXTURE_DICOM.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        hu = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))[0, :16, :16].astype(np.int32)
        stored = (hu - int(ds.RescaleIntercept)) // int(ds.RescaleSlope)
        out.append((float(ds.ImagePositionPatient[2]), f, np.clip(stored, 0, 4095).astype(np.uint16)))
    out.sort(key=lambda t: t[0])
    return [(f, px) for _, f, px in out]


def _write_slice(src: Path, pixels: np.ndarray, path: Path, study: str, series: str,
                 description: str = "", with_pixels: bool = True, modality: str = "",
                 frame: str = "", change: Callable[[pydicom.Dataset], None] | None = None) -> None:
    ds = pydicom.dcmread(src)
    for elem in list(ds):
        if elem.VR == "SQ" or elem.tag.is_private:
            del ds[elem.tag]
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    if description:
        ds.SeriesDescription = description
    if modality:
        ds.Modality = modality
    if frame:
        ds.FrameOfReferenceUID = frame
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series, str(src.name)])
    ds.PatientID = "TEXTSEG-BAD-INPUT"
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if with_pixels:
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds["PixelData"].VR = "OW"
        ds.LargestImagePixelValue = int(pixels.max())
        ds.SmallestImagePixelValue = int(pixels.min())
    else:
        del ds.PixelData
    if change is not None:
        change(ds)
    ds.save_as(path, enforce_file_format=True)


def _set(**tags) -> Callable[[pydicom.Dataset], None]:
    def change(ds: pydicom.Dataset) -> None:
        for key, value in tags.items():
            setattr(ds, key, value)
    return change


def _series(out: Path, name: str, slices, change=None, n: int = 3, changes=None) -> None:
    """A small series ``name`` of the first ``n`` fixture slices, each changed by ``change``
    (or by ``changes[i]``)."""
    folder = out / name
    folder.mkdir()
    study = generate_uid(entropy_srcs=["textseg-bad-inputs-study"])
    uid = generate_uid(entropy_srcs=["textseg-bad-inputs", name])
    for i, (src, px) in enumerate(slices[:n]):
        _write_slice(src, px, folder / f"s{i}.dcm", study, uid, name,
                     change=changes[i] if changes else change)


def _positions(step: float) -> list[Callable[[pydicom.Dataset], None]]:
    return [_set(ImagePositionPatient=[-100.0, -100.0, 100.0 + i * step], SliceLocation=None) for i in range(3)]


def _short_pixels(keep: int) -> Callable[[pydicom.Dataset], None]:
    def change(ds: pydicom.Dataset) -> None:
        ds.PixelData = ds.PixelData[:keep]
    return change


def _huge_rows(ds: pydicom.Dataset) -> None:
    ds.Rows = ds.Columns = 20000
    ds.PixelData = ds.PixelData[:1024]


def _encapsulated(syntax: str, payload: bytes) -> Callable[[pydicom.Dataset], None]:
    def change(ds: pydicom.Dataset) -> None:
        from pydicom.encaps import encapsulate

        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([payload])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return change


def make_dicom_geometry(out: Path) -> None:
    """Series whose tags a reader must not repair silently (issue 22, items 6, 7, 10)."""
    slices = _fixture_slices()
    _series(out, "dicom_nan_position", slices, changes=[_set(ImagePositionPatient=["nan", "nan", "nan"])] * 3)
    _series(out, "dicom_zero_pixel_spacing", slices, _set(PixelSpacing=[0, 0]))
    _series(out, "dicom_short_pixel_data", slices, n=2, changes=[lambda ds: None, _short_pixels(200)])
    _series(out, "dicom_huge_rows", slices, _huge_rows, n=2)
    _series(out, "dicom_monochrome1", slices, _set(PhotometricInterpretation="MONOCHROME1"))
    _series(out, "dicom_bad_rescale", slices, _set(RescaleSlope="9.9"))
    for f in (out / "dicom_bad_rescale").iterdir():  # pydicom refuses to store 'abc' as a DS value
        f.write_bytes(f.read_bytes().replace(b"\x28\x00\x53\x10DS\x04\x009.9 ", b"\x28\x00\x53\x10DS\x04\x00abc "))
    _series(out, "dicom_tiny_spacing", slices, changes=_positions(1e-6))
    _series(out, "dicom_500mm_spacing", slices, changes=_positions(500.0))
    _series(out, "dicom_zero_orientation", slices, _set(ImageOrientationPatient=[0, 0, 0, 0, 0, 0]))
    _series(out, "dicom_corrupt_jpeg", slices,
            _encapsulated("1.2.840.10008.1.2.4.50", b"\xff\xd8\xff\xdb" + bytes(range(256)) * 2 + b"\xff\xd9"))
    _series(out, "dicom_htj2k", slices,
            _encapsulated("1.2.840.10008.1.2.4.201", b"\xff\x4f\xff\x51" + bytes(64)))


def make_dicom(out: Path) -> None:
    slices = _fixture_slices()
    study = generate_uid(entropy_srcs=["textseg-bad-inputs-study"])
    uid_a = generate_uid(entropy_srcs=["textseg-bad-inputs-series-a"])
    uid_b = generate_uid(entropy_srcs=["textseg-bad-inputs-series-b"])
    two = out / "dicom_two_series"
    two.mkdir()
    for n, (src, px) in enumerate(slices[:2]):
        _write_slice(src, px, two / f"a{n}.dcm", study, uid_a, "copy A")
    for n, (src, px) in enumerate(slices[2:5]):
        _write_slice(src, px, two / f"b{n}.dcm", study, uid_b, "copy B")
    uneven = out / "dicom_uneven_spacing"
    uneven.mkdir()
    uid_c = generate_uid(entropy_srcs=["textseg-bad-inputs-series-c"])
    for idx in (0, 1, 2, 5):  # gaps 2, 2, 6 mm
        src, px = slices[idx]
        _write_slice(src, px, uneven / f"s{idx}.dcm", study, uid_c)
    # one series UID whose slices claim two modalities, and one with two frames of reference
    mixed = out / "dicom_two_modalities"
    mixed.mkdir()
    uid_e = generate_uid(entropy_srcs=["textseg-bad-inputs-series-e"])
    for n, (src, px) in enumerate(slices[:3]):
        _write_slice(src, px, mixed / f"m{n}.dcm", study, uid_e, "mixed", modality="MR" if n == 2 else "CT")
    frames = out / "dicom_two_frames"
    frames.mkdir()
    uid_f = generate_uid(entropy_srcs=["textseg-bad-inputs-series-f"])
    for n, (src, px) in enumerate(slices[:3]):
        frame = generate_uid(entropy_srcs=["textseg-bad-inputs-frame", str(n // 2)])
        _write_slice(src, px, frames / f"f{n}.dcm", study, uid_f, "two frames", frame=frame)
    noimg = out / "dicom_no_images"
    noimg.mkdir()
    uid_d = generate_uid(entropy_srcs=["textseg-bad-inputs-series-d"])
    src, px = slices[0]
    _write_slice(src, px, noimg / "header_only.dcm", study, uid_d, with_pixels=False)
    notdicom = out / "not_dicom_folder"
    notdicom.mkdir()
    (notdicom / "readme.txt").write_text("This folder holds no DICOM files.\n")
    (out / "empty_folder").mkdir()
    (out / "empty_folder" / ".keep").write_text("")


def main() -> None:
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # pydicom's note on the deliberately invalid DS values
    for p in HERE.iterdir():
        if p.name == Path(__file__).name:
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    make_files(HERE)
    make_dicom(HERE)
    make_dicom_geometry(HERE)
    make_nifti_geometry(HERE)
    make_seg_nrrd(HERE)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for _ in HERE.iterdir()) - 1} cases, {total / 1024:.0f} KiB in {HERE}")


if __name__ == "__main__":
    main()
