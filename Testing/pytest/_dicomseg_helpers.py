"""Fixture DICOM series with valid, deterministic UIDs, and an independent DICOM SEG reader.

``build_series`` copies ``Testing/Data/totalsegmentator/example_ct_dicom``
(whose UIDs are empty) into a folder and gives it UIDs derived from the
variant name, so every run makes the same UIDs. Variants:

* ``axial``: the shipped geometry;
* ``reversed``: column direction flipped (slice normal points inferior, so the
  grid's K axis runs head to feet) and instance numbers counting the other way;
* ``oblique``: orientation rotated 20° about a skew axis, slices restacked along
  the new normal.

``independent_read`` decodes a SEG with pydicom alone, written from PS3.3
C.8.20 / C.7.6.16 (not from TextSegLib): per-frame Plane Position + the shared
Plane Orientation and Pixel Measures give each set pixel's RAS position.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

SRC = Path(__file__).resolve().parents[1] / "Data" / "totalsegmentator" / "example_ct_dicom"
VARIANTS = ("axial", "reversed", "oblique")


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=["textseg-fixture", *parts])


def _rotation(axis, degrees: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def build_series(folder: Path, variant: str = "axial") -> Path:
    """Write the fixture series with deterministic UIDs (and the variant's geometry) into ``folder``."""
    assert variant in VARIANTS, variant
    folder.mkdir(parents=True, exist_ok=True)
    datasets = [pydicom.dcmread(f) for f in sorted(SRC.iterdir())]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))  # inferior to superior
    first = np.array([float(v) for v in datasets[0].ImagePositionPatient])
    dz = float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])
    rows, spacing = int(datasets[0].Rows), float(datasets[0].PixelSpacing[0])
    x, y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    if variant == "reversed":
        y = -y
        first = first + np.array([0, (rows - 1) * spacing, 0])
    elif variant == "oblique":
        r = _rotation([1.0, 0.5, 0.3], 20.0)
        x, y = r @ x, r @ y
    normal = np.cross(x, y)
    study, series, frame = _uid(variant, "study"), _uid(variant, "series"), _uid(variant, "frame")
    n = len(datasets)
    for rank, ds in enumerate(datasets):
        if variant == "reversed":  # same physical z; the normal points down, so K runs head to feet
            ipp = np.array([first[0], first[1], first[2] + rank * abs(dz)])
        else:
            ipp = first + rank * abs(dz) * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*x, *y)]
        ds.SliceLocation = f"{float(ipp @ normal):.4f}"
        ds.SOPClassUID = pydicom.uid.CTImageStorage
        ds.SOPInstanceUID = _uid(variant, "instance", str(rank))
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName = "TEXTSEG-FIXTURE", "Fixture^Phantom"
        ds.StudyID, ds.AccessionNumber = "1", "TS0001"
        ds.SeriesNumber = 3
        ds.InstanceNumber = (n - rank) if variant == "reversed" else rank + 1
        ds.SeriesDescription = f"CT fixture {variant}"
        ds.save_as(folder / f"IMG{int(ds.InstanceNumber):04d}.dcm", enforce_file_format=True)
    return folder


# -- independent reader (pydicom only) ---------------------------------------------
def _codes(item, keyword: str) -> tuple[str, str, str] | None:
    seq = item.get(keyword)
    if not seq:
        return None
    c = seq[0]
    return (str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning))


def independent_read(path) -> dict:
    """Segments of a SEG file: codes, colour, algorithm, and the RAS mm of every set pixel."""
    ds = pydicom.dcmread(path)
    seg_type = str(ds.SegmentationType)
    # Segmentation Storage; Label Map Segmentation Storage (Sup 243) for LABELMAP
    want = "1.2.840.10008.5.1.4.1.1.66.7" if seg_type == "LABELMAP" else "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.SOPClassUID == want, f"SOP class {ds.SOPClassUID} for a {seg_type} segmentation"
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    row_mm, col_mm = (float(v) for v in measures.PixelSpacing)
    pixels = ds.pixel_array
    if int(ds.NumberOfFrames) == 1:
        pixels = pixels[None]
    segments = {}
    for item in ds.SegmentSequence:
        algo = item.get("SegmentationAlgorithmIdentificationSequence")
        params = {}
        if algo and algo[0].get("AlgorithmParameters"):
            for kv in str(algo[0].AlgorithmParameters).split(","):
                k, _, v = kv.partition("=")
                params[k] = v
        type_item = item.SegmentedPropertyTypeCodeSequence[0]
        region_seq = item.get("AnatomicRegionSequence")
        segments[int(item.SegmentNumber)] = {
            "label": str(item.SegmentLabel),
            "category": _codes(item, "SegmentedPropertyCategoryCodeSequence"),
            "type": _codes(item, "SegmentedPropertyTypeCodeSequence"),
            "modifier": _codes(type_item, "SegmentedPropertyTypeModifierCodeSequence"),
            "region": _codes(item, "AnatomicRegionSequence"),
            "region_modifier": _codes(region_seq[0], "AnatomicRegionModifierSequence") if region_seq else None,
            "lab": [int(v) for v in item.RecommendedDisplayCIELabValue],
            "algorithm_type": str(item.SegmentAlgorithmType),
            "algorithm_name": str(algo[0].AlgorithmName) if algo else "",
            "algorithm_version": str(algo[0].AlgorithmVersion) if algo else "",
            "parameters": params,
            "ras": [],
        }
    for f, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        orient = fg.get("PlaneOrientationSequence") or shared.PlaneOrientationSequence
        iop = np.array([float(v) for v in orient[0].ImageOrientationPatient])
        ipp = np.array([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient])
        r, c = np.nonzero(pixels[f])
        values = pixels[f][r, c]
        lps = ipp + c[:, None] * col_mm * iop[:3] + r[:, None] * row_mm * iop[3:]
        ras = lps * np.array([-1.0, -1.0, 1.0])
        if seg_type == "BINARY":
            ident = fg.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence  # either place
            number = int(ident[0].ReferencedSegmentNumber)
            segments[number]["ras"].append(ras)
        else:
            for number in np.unique(values):
                if int(number) in segments and int(number) > 0:  # 0 = background
                    segments[int(number)]["ras"].append(ras[values == number])
    for s in segments.values():
        s["ras"] = np.concatenate(s["ras"]) if s["ras"] else np.zeros((0, 3))
    return {"type": seg_type, "segments": segments, "dataset": ds}


def contains(ras_points: np.ndarray, point, tol: float) -> bool:
    """True if some set pixel centre lies within ``tol`` mm of ``point``."""
    if not len(ras_points):
        return False
    return bool(np.min(np.linalg.norm(ras_points - np.asarray(point, float), axis=1)) <= tol)
