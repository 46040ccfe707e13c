"""Dice of an engine on the held-out patient (TotalSegmentator's CT DICOM
series), computed on the scan's own voxels against its TotalSegmentator
label map (``example_seg_dicom.nii.gz``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ...volume import Volume
from .labels import ts_concept

#: Large structures whose mean Dice is reported (when present in the scan).
LARGE = ("liver", "spleen", "left kidney", "right kidney", "aorta", "left lung", "right lung")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def reference_masks(volume: Volume, seg_path: Path, class_map: dict[int, str]) -> dict[str, np.ndarray]:
    """Concept masks on ``volume``'s grid from a TotalSegmentator label file."""
    from ...io.sitk_convert import to_sitk

    ref = to_sitk(volume)
    lab = sitk.Resample(sitk.ReadImage(str(seg_path)), ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    arr = sitk.GetArrayFromImage(lab).transpose(2, 1, 0)
    out: dict[str, np.ndarray] = {}
    for idx in np.unique(arr):
        c = ts_concept(class_map.get(int(idx), "")) if idx else None
        if c:
            out[c] = out[c] | (arr == idx) if c in out else arr == idx
    return out


def evaluate(engine, volume: Volume, refs: dict[str, np.ndarray], prompts: dict[str, Sequence[str]]) -> dict:
    """Per-prompt Dice. ``prompts`` maps a concept to the prompt texts to try.

    Concepts absent from ``refs`` are scored as negatives: Dice 1.0 only if
    the engine returns an empty mask (reported as 'absent').
    """
    texts = [t for ts in prompts.values() for t in ts]
    res = engine.segment(volume, texts, modality="ct")
    rows = {}
    for concept, ts in prompts.items():
        ref = refs.get(concept)
        for t in ts:
            m = res.masks[t]
            rows[(concept, t)] = {
                "present": ref is not None,
                "dice": dice(m, ref) if ref is not None else float(not m.any()),
                "pred_ml": float(m.sum() * np.prod(volume.spacing) / 1000.0),
                "ref_ml": float(ref.sum() * np.prod(volume.spacing) / 1000.0) if ref is not None else 0.0,
            }
    return {"rows": rows, "timings": res.timings}


#: TotalSegmentator 'total' class indices of the structures scored on the
#: held-out scan (from TotalSegmentator 2.18.0 map_to_binary.py, Apache-2.0).
TS_TOTAL_SUBSET = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach",
                   52: "aorta", 63: "inferior_vena_cava"}
#: Paraphrases per structure for the robustness table.
PARAPHRASES = {
    "liver": ("liver", "hepatic parenchyma", "the liver"),
    "spleen": ("spleen", "splenic parenchyma", "the spleen"),
    "aorta": ("aorta", "abdominal aorta", "the aorta"),
    "stomach": ("stomach", "gaster", "the stomach"),
    "left kidney": ("left kidney", "kidney, left", "lt kidney"),
    "right kidney": ("right kidney", "kidney, right", "rt kidney"),
}


def holdout_data(seg_path: Path | None = None) -> tuple[Volume, dict[str, np.ndarray]]:
    """The shipped demo scan (= held-out patient) and its reference concept masks."""
    from ...io.sitk_convert import from_sitk
    from ...resources import PACKAGE_DIR
    from .sample import sample_path

    vol = from_sitk(sitk.ReadImage(str(sample_path())), "ct", "abdomen_ct_sample")
    seg_path = seg_path or PACKAGE_DIR.parent / "Testing" / "Data" / "totalsegmentator" / "example_seg_dicom.nii.gz"
    if not seg_path.is_file():
        from . import sources

        seg_path = sources.totalsegmentator_root() / "tests" / "reference_files" / "example_seg_dicom.nii.gz"
    return vol, reference_masks(vol, seg_path, TS_TOTAL_SUBSET)


def format_table(result: dict) -> str:
    """A plain-text Dice table (one line per prompt) + the large-structure mean."""
    lines = [f"{'structure':<14} {'prompt':<22} {'Dice':>6} {'pred mL':>8} {'ref mL':>8}"]
    firsts: dict[str, float] = {}
    for (concept, text), r in result["rows"].items():
        tag = "" if r["present"] else "  (absent: 1 = empty output)"
        lines.append(f"{concept:<14} {text:<22} {r['dice']:6.3f} {r['pred_ml']:8.1f} {r['ref_ml']:8.1f}{tag}")
        if r["present"] and concept not in firsts:
            firsts[concept] = r["dice"]
    large = [firsts[c] for c in LARGE if c in firsts]
    if large:
        lines.append(f"mean Dice over present large structures ({', '.join(c for c in LARGE if c in firsts)}): "
                     f"{np.mean(large):.3f}")
    return "\n".join(lines)


def holdout_report(folder: Path | str | None = None, paraphrases: bool = False, cache: Path | None = None) -> str:
    """Dice table of the model in ``folder`` (default: the shipped one) on the held-out scan."""
    from .engine import load_bundled_engine

    engine = load_bundled_engine(folder)
    vol, refs = holdout_data()
    prompts = PARAPHRASES if paraphrases else {c: (p[0],) for c, p in PARAPHRASES.items()}
    return "Held-out patient (TotalSegmentator CT DICOM series):\n" + format_table(
        evaluate(engine, vol, refs, prompts))
