"""DICOM SEG round trip: write with TextSeg, read back with TextSeg, highdicom and an independent
pydicom-only reader; landmarks checked in RAS so that a mirror on any axis fails."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from _dicomseg_helpers import VARIANTS, build_series, contains, independent_read
from TextSegLib.io import read_seg_nrrd, read_segmentation, read_volume, write_dicom_seg, write_seg_nrrd
from TextSegLib.io.dicomseg import FREE_TEXT_TYPE, DicomSegError
from TextSegLib.segmentation import Segment, Segmentation, parse_terminology

hd = pytest.importorskip("highdicom")

KIDNEY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
          "SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^")
TUMOUR = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure~"
          "SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^")
#: landmarks as offsets (mm) from the grid centre along the grid's own I, J, K directions.
LANDMARKS = {"Left kidney": (70.0, 20.0, -8.0), "Liver neoplasm": (-60.0, -25.0, 6.0), "odd blob": (-20.0, 40.0, 10.0)}
RADIUS = 7.0


def true_grid(folder):
    """IJK->RAS of a series from its headers alone (pydicom; columns, rows, sorted slice normal)."""
    ds = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())]
    iop = np.array([float(v) for v in ds[0].ImageOrientationPatient])
    x, y = iop[:3], iop[3:]
    n = np.cross(x, y)
    ds.sort(key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], n)))
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in ds])
    row_mm, col_mm = (float(v) for v in ds[0].PixelSpacing)
    dz = float(np.dot(ipp[1] - ipp[0], n))
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x * col_mm, y * row_mm, n * dz, ipp[0]
    shape = (int(ds[0].Columns), int(ds[0].Rows), len(ds))
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ m, shape


def expected_points(folder) -> dict[str, np.ndarray]:
    m, shape = true_grid(folder)
    centre = m @ np.r_[(np.array(shape) - 1) / 2.0, 1.0]
    d = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    return {name: centre[:3] + d @ np.array(o) for name, o in LANDMARKS.items()}


def mirrors(folder, point) -> list[np.ndarray]:
    """``point`` reflected through the grid centre along each grid axis in turn."""
    m, shape = true_grid(folder)
    centre = (m @ np.r_[(np.array(shape) - 1) / 2.0, 1.0])[:3]
    d = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    out = []
    for axis in range(3):
        off = d.T @ (point - centre)
        off[axis] = -off[axis]
        out.append(centre + d @ off)
    return out


def synthetic(volume, folder) -> Segmentation:
    """Balls at the landmarks, masks made on TextSeg's own grid of the volume."""
    seg = Segmentation(volume)
    seg.meta.update(model="textseg-mini", weights_sha256="ab" * 32)
    m = volume.ijk_to_ras
    inv = np.linalg.inv(m)
    reach = RADIUS / np.linalg.norm(m[:3, :3], axis=0).min() + 2
    terms = {"Left kidney": KIDNEY, "Liver neoplasm": TUMOUR, "odd blob": ""}
    for name, p in expected_points(folder).items():
        centre = inv[:3, :3] @ p + inv[:3, 3]
        lo = np.maximum(np.floor(centre - reach), 0).astype(int)
        hi = np.minimum(np.ceil(centre + reach) + 1, volume.shape).astype(int)
        ijk = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        ras = ijk @ m[:3, :3].T + m[:3, 3]
        mask = np.zeros(volume.shape, bool)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = np.linalg.norm(ras - p, axis=-1) <= RADIUS
        meta = {"prompt": {"Left kidney": "lt kidney, please", "Liver neoplasm": "liver tumour"}.get(name, name)}
        if name == "Liver neoplasm":
            meta["refined"] = True
        seg.add(Segment(name, mask, terminology=terms[name], concept_id=None if name == "odd blob" else
                        name.lower().replace(" ", "_"), meta=meta))
    return seg


def landmark_problems(path, folder) -> list[str]:
    """Landmark checks with the independent reader: the ball centre is set, its mirrors are not,
    the centroid sits on the landmark."""
    got = independent_read(path)
    by_label = {s["label"]: s for s in got["segments"].values()}
    m, _ = true_grid(folder)
    tol = 0.5 * float(np.linalg.norm(np.linalg.norm(m[:3, :3], axis=0))) + 1e-3  # half a voxel diagonal
    problems = []
    for name, p in expected_points(folder).items():
        pts = by_label[name]["ras"]
        if not contains(pts, p, tol):
            problems.append(f"{name}: no voxel at its landmark {np.round(p, 1)}")
        for axis, q in zip("IJK", mirrors(folder, p)):
            if np.linalg.norm(q - p) > 2 * RADIUS and contains(pts, q, tol):
                problems.append(f"{name}: voxels at the landmark mirrored along {axis}")
        if len(pts) and np.linalg.norm(pts.mean(axis=0) - p) > 1.0:
            problems.append(f"{name}: centroid {np.round(pts.mean(axis=0), 1)} is not at {np.round(p, 1)}")
    return problems


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicomseg")
    return {v: build_series(root / v, v) for v in VARIANTS}


@pytest.fixture(scope="module")
def volumes(series):
    return {v: read_volume(f) for v, f in series.items()}


def test_fixture_uids_are_deterministic_and_valid(tmp_path, series):
    again = build_series(tmp_path / "again", "axial")
    a = sorted(pydicom.dcmread(f).SOPInstanceUID for f in series["axial"].iterdir())
    b = sorted(pydicom.dcmread(f).SOPInstanceUID for f in again.iterdir())
    assert a == b and len(set(a)) == 20
    assert all(pydicom.uid.UID(u).is_valid for u in a)


@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_roundtrip_geometry(tmp_path, series, volumes, variant, seg_type):
    folder = series[variant]
    volume = volumes[variant]
    seg = synthetic(volume, folder)
    report = write_dicom_seg(seg, volume, tmp_path / "seg.dcm", segmentation_type=seg_type)
    nrrd = read_seg_nrrd(write_seg_nrrd(seg, tmp_path / "seg.seg.nrrd"))
    # 1. TextSeg's reader on the reference grid: voxel-equal to the .seg.nrrd of the same result
    back = read_segmentation(report.path, reference=volume)
    assert np.allclose(back.ijk_to_ras, nrrd.ijk_to_ras, atol=1e-4)
    assert back.names == nrrd.names == list(LANDMARKS)
    for s in nrrd:
        assert s.voxel_count > 100
        assert np.array_equal(back[s.name].mask, s.mask), s.name
    # 2. highdicom: type, segment numbers, and the frames of each source instance
    h = hd.seg.segread(report.path)
    assert h.segmentation_type.value == seg_type and list(h.segment_numbers) == [1, 2, 3]
    files = volume.meta["dicom_files"]
    for k in (6, 10, 13):
        uid = pydicom.dcmread(files[k], stop_before_pixels=True).SOPInstanceUID
        frame = h.get_pixels_by_source_instance(source_sop_instance_uids=[uid], segment_numbers=[1, 2, 3],
                                                combine_segments=False, skip_overlap_checks=True)[0]
        for n, s in enumerate(nrrd):
            assert np.array_equal(frame[..., n].astype(bool), s.mask[:, :, k].T), (k, s.name)
    # 3. independent pydicom reader: landmarks in RAS, so a mirror on any axis fails
    assert landmark_problems(report.path, folder) == []
    # empty frames are omitted
    assert report.frames < (3 * 20 if seg_type == "BINARY" else 20)


def _flip(path, out, how: str):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.copy()
    if how == "columns":
        arr = arr[:, :, ::-1]
    elif how == "rows":
        arr = arr[:, ::-1, :]
    else:  # frame positions reversed along the slice normal
        pos = [list(fg.PlanePositionSequence[0].ImagePositionPatient) for fg in ds.PerFrameFunctionalGroupsSequence]
        zs = sorted({float(p[2]) for p in pos})
        for fg, p in zip(ds.PerFrameFunctionalGroupsSequence, pos):
            fg.PlanePositionSequence[0].ImagePositionPatient = [p[0], p[1], zs[-1 - zs.index(float(p[2]))] + 0.0]
    ds.PixelData = pydicom.pixels.pack_bits(np.ascontiguousarray(arr).ravel())
    ds.save_as(out)
    return out


@pytest.mark.parametrize("how", ["columns", "rows", "slices"])
def test_a_flipped_axis_is_caught(tmp_path, series, volumes, how):
    """Deliberately mirror one axis of a correct SEG: the landmark check must report it."""
    folder = series["axial"]
    volume = volumes["axial"]
    path = write_dicom_seg(synthetic(volume, folder), volume, tmp_path / "seg.dcm").path
    assert landmark_problems(path, folder) == []
    flipped = _flip(path, tmp_path / "flipped.dcm", how)
    problems = landmark_problems(flipped, folder)
    assert problems and any("mirrored" in p or "no voxel" in p for p in problems), problems
    back = read_segmentation(flipped, reference=volume)
    assert not np.array_equal(back["Left kidney"].mask, read_segmentation(path, reference=volume)["Left kidney"].mask)


def _srgb_to_dicom_lab(rgb) -> np.ndarray:
    """sRGB (0..1) -> CIELab (D65) scaled as PS3.3 C.10.7.1.1 (independent of highdicom)."""
    c = np.array(rgb, float)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    return np.array([lab[0] * 65535 / 100, (lab[1] + 128) * 65535 / 255, (lab[2] + 128) * 65535 / 255])


def test_codes_colours_and_algorithm_identification(tmp_path, series, volumes):
    folder = series["axial"]
    volume = volumes["axial"]
    seg = synthetic(volume, folder)
    path = write_dicom_seg(seg, volume, tmp_path / "seg.dcm").path
    got = independent_read(path)
    ds = got["dataset"]
    src = pydicom.dcmread(volume.meta["dicom_files"][0], stop_before_pixels=True)
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == "TEXTSEG-FIXTURE"
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) >= 10
    s = {x["label"]: x for x in got["segments"].values()}
    kidney, tumour, blob = s["Left kidney"], s["Liver neoplasm"], s["odd blob"]
    assert kidney["type"] == ("SCT", "64033007", "Kidney") and kidney["modifier"] == ("SCT", "7771000", "Left")
    assert kidney["category"] == ("SCT", "123037004", "Anatomical Structure")
    assert tumour["type"][1] == "108369006" and tumour["region"] == ("SCT", "10200004", "Liver")
    assert blob["type"] == FREE_TEXT_TYPE and blob["type"][0] == "99TEXTSEG"
    assert blob["category"][0] == "99TEXTSEG"  # never an organ's code
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99TEXTSEG"
    for name in s:
        want = _srgb_to_dicom_lab(seg[name].color)
        assert np.abs(np.array(s[name]["lab"]) - want).max() < 0.01 * 65535, name
    from urllib.parse import unquote

    assert kidney["algorithm_name"] == "TextSeg" and kidney["algorithm_version"] == "0.1.0"
    assert kidney["algorithm_type"] == "AUTOMATIC" and tumour["algorithm_type"] == "SEMIAUTOMATIC"
    assert unquote(kidney["parameters"]["prompt"]) == "lt kidney, please"
    assert kidney["parameters"]["model"] == "textseg-mini" and kidney["parameters"]["weights_sha256"] == "ab" * 32
    # TextSeg's own reader gives back names, terminology, colours, concepts, prompts
    back = read_segmentation(path)
    assert back.meta["grid"] == "frames" and back.meta["model"] == "textseg-mini"
    for x in seg:
        y = back[x.name]
        assert y.concept_id == x.concept_id and y.meta["prompt"] == x.meta["prompt"]
        assert np.abs(np.array(y.color) - np.array(x.color)).max() < 2 / 255
        if x.terminology:
            a, b = parse_terminology(x.terminology), parse_terminology(y.terminology)
            assert (a.category, a.type, a.type_modifier, a.anatomic_region) == \
                (b.category, b.type, b.type_modifier, b.anatomic_region)
        else:
            assert y.terminology == ""
        assert y.voxel_count == x.voxel_count


def test_overlaps_binary_keeps_them_labelmap_refuses(tmp_path, volumes):
    volume = volumes["axial"]
    a = np.zeros(volume.shape, bool)
    a[100:200, 100:200, 5:10] = True
    b = np.zeros(volume.shape, bool)
    b[150:250, 150:250, 7:12] = True
    seg = Segmentation(volume, [Segment("Liver", a), Segment("Liver neoplasm", b)])
    path = write_dicom_seg(seg, volume, tmp_path / "b.dcm").path
    back = read_segmentation(path, reference=volume)
    assert np.array_equal(back["Liver"].mask, a) and np.array_equal(back["Liver neoplasm"].mask, b)
    with pytest.raises(DicomSegError, match="overlap.*Liver / Liver neoplasm.*BINARY"):
        write_dicom_seg(seg, volume, tmp_path / "l.dcm", segmentation_type="LABELMAP")
    assert not (tmp_path / "l.dcm").exists()


def test_empty_segments_left_out_and_reported(tmp_path, volumes):
    volume = volumes["axial"]
    a = np.zeros(volume.shape, bool)
    a[10:20, 10:20, 2] = True
    seg = Segmentation(volume, [Segment("Liver", a), Segment("Spleen", np.zeros(volume.shape, bool))])
    report = write_dicom_seg(seg, volume, tmp_path / "s.dcm")
    assert report.segments == ["Liver"] and report.empty_segments == ["Spleen"] and report.frames == 1
    back = read_segmentation(report.path, reference=volume)  # one segment: its identification is shared
    assert back.names == ["Liver"] and np.array_equal(back["Liver"].mask, a)
    assert independent_read(report.path)["segments"][1]["ras"].shape == (100, 3)
    with pytest.raises(DicomSegError, match="every segment is empty"):
        write_dicom_seg(Segmentation(volume, [Segment("Spleen", np.zeros(volume.shape, bool))]), volume,
                        tmp_path / "e.dcm")


def test_no_source_dicom_is_a_clear_error(tmp_path, data_dir):
    volume = read_volume(data_dir / "totalsegmentator" / "example_ct_sm.nii.gz")
    m = np.zeros(volume.shape, bool)
    m[5, 5, 5] = True
    with pytest.raises(DicomSegError, match="needs the source DICOM series.*NIfTI"):
        write_dicom_seg(Segmentation(volume, [Segment("Liver", m)]), volume, tmp_path / "x.dcm")


def test_source_with_empty_uids_is_a_clear_error(tmp_path, data_dir):
    volume = read_volume(data_dir / "totalsegmentator" / "example_ct_dicom")
    m = np.zeros(volume.shape, bool)
    m[5, 5, 5] = True
    with pytest.raises(DicomSegError, match="empty SOPInstanceUID"):
        write_dicom_seg(Segmentation(volume, [Segment("Liver", m)]), volume, tmp_path / "x.dcm")


def test_existing_output_is_not_overwritten(tmp_path, volumes):
    volume = volumes["axial"]
    m = np.zeros(volume.shape, bool)
    m[5, 5, 5] = True
    (tmp_path / "x.dcm").write_bytes(b"mine")
    from TextSegLib.errors import OutputPathError

    with pytest.raises(OutputPathError, match="already exists"):
        write_dicom_seg(Segmentation(volume, [Segment("Liver", m)]), volume, tmp_path / "x.dcm")
    assert (tmp_path / "x.dcm").read_bytes() == b"mine"


def test_info_shows_a_seg(tmp_path, series, volumes, capsys):
    import json

    from TextSegLib.cli.main import main

    seg = synthetic(volumes["axial"], series["axial"])
    path = write_dicom_seg(seg, volumes["axial"], tmp_path / "s.dcm", segmentation_type="LABELMAP").path
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DICOM SEG LABELMAP" in out and "model        textseg-mini" in out
    assert "SCT^64033007^Kidney (Left)  [AUTOMATIC]" in out and "[SEMIAUTOMATIC]" in out and "(no code)" in out
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in info["segments"]] == list(LANDMARKS)
    assert [s["voxels"] for s in info["segments"]] == [s.voxel_count for s in seg]
    assert info["shape"][2] < 20  # without the scan: the stored frames only
    assert main(["info", str(path), "--json", "--image", str(series["axial"])]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["shape"] == [512, 512, 20] and full["segments"][0]["mean"] is not None
    assert [s["voxels"] for s in full["segments"]] == [s.voxel_count for s in seg]


@pytest.mark.slow
def test_bundled_model_result_roundtrip(tmp_path, series):
    """The fixture series segmented by textseg-mini: liver on the patient's right of the spleen in the SEG."""
    from TextSegLib.models.catalog import load_engine

    folder = series["axial"]
    volume = read_volume(folder)
    result = load_engine("textseg-mini").segment(volume, ["liver", "spleen"])
    seg = Segmentation(volume, [Segment("Liver", result.masks["liver"]), Segment("Spleen", result.masks["spleen"])])
    path = write_dicom_seg(seg, volume, tmp_path / "m.dcm").path
    nrrd = read_seg_nrrd(write_seg_nrrd(seg, tmp_path / "m.seg.nrrd"))
    back = read_segmentation(path, reference=volume)
    for s in nrrd:
        assert np.array_equal(back[s.name].mask, s.mask)
    got = {x["label"]: x["ras"] for x in independent_read(path)["segments"].values()}
    assert got["Liver"][:, 0].mean() > got["Spleen"][:, 0].mean() + 50  # RAS +x = patient's right


def test_source_must_cover_the_grid(tmp_path, volumes):
    volume = volumes["axial"]
    m = np.zeros(volume.shape, bool)
    m[5, 5, 5] = True
    with pytest.raises(DicomSegError, match="do not cover the segmentation grid"):
        write_dicom_seg(Segmentation(volume, [Segment("Liver", m)]), volume.meta["dicom_files"][:-1], tmp_path / "x.dcm")
    from TextSegLib.errors import GeometryError

    shifted = Segmentation(type("G", (), {"shape": volume.shape, "ijk_to_ras": volume.ijk_to_ras @ np.diag([1, 1, 1.5, 1])})(),
                           [Segment("Liver", m)])
    with pytest.raises(GeometryError, match="between voxel centres|outside"):
        write_dicom_seg(shifted, volume, tmp_path / "y.dcm")


def test_cli_dicom_output_checks_before_segmenting(tmp_path, data_dir, capsys):
    from TextSegLib.cli.main import main

    nifti = str(data_dir / "totalsegmentator" / "example_ct_sm.nii.gz")
    capsys.readouterr()
    assert main(["segment", nifti, "-p", "liver", "-o", str(tmp_path / "x.dcm")]) == 2
    assert "needs the source DICOM series" in capsys.readouterr().err
    assert main(["segment", "-p", "liver", "-o", str(tmp_path / "x.dcm")]) == 2
    assert "no image given" in capsys.readouterr().err
    assert main(["segment", "--dicomweb", "http://127.0.0.1:9/dicom-web", "-p", "liver", "-o",
                 str(tmp_path / "x.dcm")]) == 2
    assert "--dicomweb needs --series" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()
