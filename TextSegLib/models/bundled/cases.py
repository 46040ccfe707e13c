"""Labelled cases on the model grid: image, concept masks, known negatives.

A :class:`Case` holds the raw intensities resampled to the model grid
(:func:`preprocess.prepare`), one boolean mask per labelled concept and the
set of concepts known to be absent (cases with a complete TotalSegmentator
label map). Threshold-based ``body`` and lung masks are added to CT cases
that lack them. Cases are cached as ``.npz`` in the training cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...volume import Volume, make_ijk_to_ras
from . import sources
from .labels import UNIONS, ts_concept
from .preprocess import SPACING, mask_to_grid, prepare

HOLDOUT = "ts_dicom"


@dataclass
class Case:
    name: str
    patient: str
    modality: str
    image: np.ndarray  # raw intensities on the model grid
    ijk_to_ras: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    negatives: set[str] = field(default_factory=set)
    source: str = ""


# -- threshold masks ------------------------------------------------------------
def body_mask_ct(hu: np.ndarray) -> np.ndarray:
    """Largest connected region above -300 HU, holes filled slice by slice."""
    m = ndimage.binary_opening(hu > -300, iterations=1)
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    m = lab == (int(np.argmax(sizes)) + 1)
    for k in range(m.shape[2]):
        m[:, :, k] = ndimage.binary_fill_holes(m[:, :, k])
    return m


def lung_masks_ct(hu: np.ndarray, body: np.ndarray, voxel_ml: float) -> dict[str, np.ndarray]:
    """Left/right lung from air inside the body (components ≥ 100 mL).

    Sides follow RAS (axis 0 increasing = towards the patient's right) about the body's centre.
    """
    air = body & (hu < -500)
    air = ndimage.binary_opening(air, iterations=1)
    lab, n = ndimage.label(air)
    if n == 0:
        return {}
    sizes = ndimage.sum(air, lab, range(1, n + 1)) * voxel_ml
    keep = [i + 1 for i, s in enumerate(sizes) if s >= 100.0]
    if not keep:
        return {}
    lungs = np.isin(lab, keep)
    lungs = ndimage.binary_closing(lungs, iterations=2) & body
    cx = np.argwhere(body)[:, 0].mean()
    xs = np.arange(hu.shape[0])[:, None, None]
    left, right = lungs & (xs < cx), lungs & (xs >= cx)
    out = {}
    if left.sum() * voxel_ml > 50:
        out["left lung"] = left
    if right.sum() * voxel_ml > 50:
        out["right lung"] = right
    return out


# -- readers (SimpleITK is imported only to build cases, not to load the cache) --
def _read(path: Path, modality: str = "") -> Volume:
    import SimpleITK as sitk

    from ...io.sitk_convert import from_sitk

    return from_sitk(sitk.ReadImage(str(path)), modality, path.name)


def _resample_onto(mask_img, ref) -> np.ndarray:
    """Nearest-neighbour resampling of a label image onto ``ref``'s voxels ([i,j,k])."""
    import SimpleITK as sitk

    out = sitk.Resample(mask_img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def _ts_labels(seg: np.ndarray, class_map: dict[int, str]) -> tuple[dict[str, np.ndarray], set[str]]:
    """Concept masks from a TotalSegmentator label map, plus absent concepts."""
    masks: dict[str, np.ndarray] = {}
    present = set(np.unique(seg).tolist())
    all_concepts = set()
    for idx, name in class_map.items():
        c = ts_concept(name)
        if c is None:
            continue
        all_concepts.add(c)
        if idx in present:
            masks[c] = masks[c] | (seg == idx) if c in masks else seg == idx
    for union, parts in UNIONS.items():
        got = [masks[p] for p in parts if p in masks]
        if any(p in all_concepts for p in parts):
            all_concepts.add(union)
        if got:
            masks[union] = np.logical_or.reduce(got)
    return masks, all_concepts - set(masks)


def _finish(name: str, patient: str, vol: Volume, masks: dict[str, np.ndarray],
            negatives: set[str], source: str, add_body: bool = True) -> Case:
    """Resample image + masks to the model grid and add threshold masks."""
    raw, grid = prepare(vol)
    labels = {c: mask_to_grid(m, vol) for c, m in masks.items()}
    labels = {c: m for c, m in labels.items() if m.any()}
    negatives = set(negatives) - set(labels)
    if vol.modality == "ct" and add_body:
        body = body_mask_ct(raw)
        labels["body"] = body
        if "left lung" not in labels and "right lung" not in labels:
            labels.update(lung_masks_ct(raw, body, SPACING ** 3 / 1000.0))
    return Case(name, patient, vol.modality, raw.astype(np.float32), grid.ijk_to_ras, labels, negatives, source)


def build_cases(cache: Path | None = None) -> list[Case]:
    """Every training case plus the held-out DICOM patient (name ``HOLDOUT``)."""
    import SimpleITK as sitk

    from ...io.sitk_convert import from_sitk

    cache = cache or sources.cache_dir()
    ts = sources.totalsegmentator_root(cache) / "tests" / "reference_files"
    total, total_mr = sources.ts_class_map("total", cache), sources.ts_class_map("total_mr", cache)
    cases: list[Case] = []

    # Abdominal CT (full, fast-model labels) and its crop (normal-model labels): one patient.
    for nm, img, seg in (("ts_abd", "example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
                         ("ts_abd_sm", "example_ct_sm.nii.gz", "example_seg.nii.gz")):
        vol = _read(ts / img, "ct")
        m, neg = _ts_labels(sitk.GetArrayFromImage(sitk.ReadImage(str(ts / seg))).transpose(2, 1, 0), total)
        cases.append(_finish(nm, "ts_abd", vol, m, neg, "totalsegmentator"))

    vol = _read(ts / "example_mr_sm.nii.gz", "mri")
    m, neg = _ts_labels(sitk.GetArrayFromImage(sitk.ReadImage(str(ts / "example_seg_mr.nii.gz"))).transpose(2, 1, 0), total_mr)
    cases.append(_finish("ts_mr", "ts_mr", vol, m, neg, "totalsegmentator"))

    # CTA with vessel masks (aorta report) + heart / pulmonary artery (pulmonary report).
    ref = sitk.ReadImage(str(ts / "aorta_report" / "example_ct.nii.gz"))
    vol = from_sitk(ref, "ct", "aorta_report/example_ct.nii.gz")
    masks = {}
    models = ts / "aorta_report" / "test_result" / "models"
    for fname, concept in (("aorta.nii.gz", "aorta"), ("brachiocephalic_trunk.nii.gz", "brachiocephalic trunk"),
                           ("celiac_trunk.nii.gz", "celiac trunk"),
                           ("common_carotid_artery_left.nii.gz", "left common carotid artery"),
                           ("subclavian_artery_left.nii.gz", "left subclavian artery"),
                           ("superior_mesenteric_artery.nii.gz", "superior mesenteric artery"),
                           ("iliac_artery_left.nii.gz", "left common iliac artery"),
                           ("iliac_artery_right.nii.gz", "right common iliac artery"),
                           ("vertebrae_T12.nii.gz", "thoracic spine")):
        a = _resample_onto(sitk.ReadImage(str(models / fname)), ref) > 0
        if a.any():
            masks[concept] = a
    pul = ts / "pulmonary_report" / "models"
    masks["heart"] = _resample_onto(sitk.ReadImage(str(pul / "heart.nii.gz")), ref) > 0
    masks["pulmonary artery"] = _resample_onto(sitk.ReadImage(str(pul / "pulmonary_artery.nii.gz")), ref) > 0
    masks.pop("thoracic spine", None)  # only T12 is labelled: a partial spine would mislead
    cases.append(_finish("ts_cta", "ts_cta", vol, masks, set(), "totalsegmentator"))

    # slicerio chest CT with 7 manual segments.
    import slicerio

    sd = sources.slicerio_data(cache)
    ref = sitk.ReadImage(str(sd / "CTChest4.nrrd"))
    vol = from_sitk(ref, "ct", "CTChest4.nrrd")
    seg = slicerio.read_segmentation(str(sd / "Segmentation.seg.nrrd"))
    vox = np.asarray(seg["voxels"])
    names = {"ribs": "ribs", "cervical vertebral column": "cervical spine",
             "thoracic vertebral column": "thoracic spine", "lumbar vertebral column": "lumbar spine",
             "right lung": "right lung", "left lung": "left lung"}
    masks = {names[s["name"]]: vox == s["labelValue"] for s in seg["segments"] if s["name"] in names}
    if vox.shape != vol.shape:
        masks = {}
    cases.append(_finish("slicerio_chest", "slicerio_chest", vol, masks, set(), "slicerio"))

    # pyradiomics lung CTs with a lesion label each.
    pd = sources.pyradiomics_data(cache)
    for k in (1, 2):
        vol = _read(pd / f"lung{k}_image.nrrd", "ct")
        lab = _read(pd / f"lung{k}_label.nrrd").array > 0
        cases.append(_finish(f"pyradiomics_lung{k}", f"pyradiomics_lung{k}", vol, {"lung tumor": lab}, set(), "pyradiomics"))

    # LiTS case 117 (128³ crop around the liver, no geometry in the file).
    cases.append(lits_case(cache))

    # Held-out patient: CT DICOM series + its TotalSegmentator labels.
    cases.append(holdout_case(cache))
    return cases


def lits_case(cache: Path | None = None) -> Case:
    """LiTS case 117. ASSUMPTION (the .mrc header has no spacing): 1.5 mm
    isotropic voxels; axes = (inferior, posterior, patient-right), read off
    the anatomy (liver dome at index 0, kidney posterior, liver on the
    patient's right); this frame is mirrored (determinant -1), as stored."""
    d = sources.liver_data(cache)
    img = np.fromfile(d / "img_117.mrc", dtype="<f4", offset=1024).reshape(128, 128, 128)
    lab = np.fromfile(d / "lab_117.mrc", dtype="<u2", offset=1024).reshape(128, 128, 128)
    direction = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], dtype=np.float64)
    m = make_ijk_to_ras((1.5, 1.5, 1.5), (0.0, 0.0, 0.0), direction)
    vol = Volume(img.astype(np.float32), m, "ct", "lits_117")
    # The crop is tight around the liver: a body mask would be wrong there.
    return _finish("lits117", "lits117", vol, {"liver": lab > 0, "liver tumor": lab == 2}, set(),
                   "liver-ct-segmentation-package", add_body=False)


def _read_series(dicom_dir: Path):
    import SimpleITK as sitk

    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(dicom_dir)))
    return r.Execute()


def holdout_case(cache: Path | None = None) -> Case:
    """The held-out patient: TotalSegmentator's CT DICOM series + its label map."""
    import SimpleITK as sitk

    from ...io.sitk_convert import from_sitk

    ts = sources.totalsegmentator_root(cache) / "tests" / "reference_files"
    img = _read_series(ts / "example_ct_dicom")
    vol = from_sitk(img, "ct", "example_ct_dicom")
    seg = _resample_onto(sitk.ReadImage(str(ts / "example_seg_dicom.nii.gz")), img)
    m, neg = _ts_labels(seg, sources.ts_class_map("total", cache))
    return _finish(HOLDOUT, HOLDOUT, vol, m, neg, "totalsegmentator")


# -- cache ----------------------------------------------------------------------
def save_cases(cases: list[Case], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, c in enumerate(cases):
        arrays[f"{i}_image"] = c.image.astype(np.float32)
        arrays[f"{i}_affine"] = c.ijk_to_ras
        names = sorted(c.labels)
        for j, n in enumerate(names):
            arrays[f"{i}_lab{j}"] = np.packbits(c.labels[n])
        meta.append({"name": c.name, "patient": c.patient, "modality": c.modality, "source": c.source,
                     "labels": names, "negatives": sorted(c.negatives)})
    import json

    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_cases(path: Path) -> list[Case]:
    import json

    z = np.load(path)
    meta = json.loads(z["meta"].tobytes().decode())
    out = []
    for i, m in enumerate(meta):
        img = z[f"{i}_image"]
        n = img.size
        labels = {name: np.unpackbits(z[f"{i}_lab{j}"], count=n).reshape(img.shape).astype(bool)
                  for j, name in enumerate(m["labels"])}
        out.append(Case(m["name"], m["patient"], m["modality"], img, z[f"{i}_affine"], labels,
                        set(m["negatives"]), m["source"]))
    return out


def get_cases(cache: Path | None = None, rebuild: bool = False) -> list[Case]:
    """Cached cases (built on first use)."""
    cache = cache or sources.cache_dir()
    path = cache / f"cases-{SPACING:g}mm-v2.npz"
    if path.exists() and not rebuild:
        return load_cases(path)
    cases = build_cases(cache)
    save_cases(cases, path)
    return cases
