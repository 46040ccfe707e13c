"""Head and neck on MR, and lesion prompts (issue 21): textseg-mini's false structures on real
head MRs, and its lesion prompts on the tuning CTs, after the presence step of whichever
TextSegLib is imported (run it once with this checkout and once with main on PYTHONPATH for a
before / after).

Scans, each with its id of the shared split rule (``"<pip spec or 'repo'>:<member>[#derivation]"``;
held out iff the first hex digit of its SHA-256 is 8-f; the script refuses a held-out one):

* head MRs, every MR term of the model (all absent: textseg-mini has no head structure):
  pyradiomics 3.0.1's brain1 and brain2 (contrast T1, 25 / 23 slices of 6.5 mm, vendored in
  ``Testing/Data/mr_head``), brain1 on 1 mm slices (linear), nilearn 0.14.1's MNI152 T1 (1 mm,
  skull-stripped, ``pip download``) and its 6.5 mm slab version, dipy's b0 (vendored), nibabel's
  EPI (installed package);
  (the MNI template, dipy's and nibabel's scans are scans of ``bench_not_found.py``, so tuning
  whatever their hash);
* lesion prompts with their hosts on the tuning CTs (scans of ``bench_not_found.py``, on the
  model's 3 mm grid as there): "liver tumour" (+ liver, gallbladder) on
  the demo patient and the TotalSegmentator abdomen (full and crop: no tumour), LiTS 117 (real
  tumours, labelled); "lung tumour" (+ both lungs) on pyradiomics lung 1 and 2 (labelled).

Usage: python benchmarks/bench_head_lesions.py [--cache DIR] [--only a,b]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEADS = ROOT / "Testing" / "Data" / "mr_head"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_not_found as bnf  # noqa: E402

from TextSegLib.engine.base import EngineResult  # noqa: E402
from TextSegLib.engine.presence import apply_presence  # noqa: E402
from TextSegLib.volume import Volume  # noqa: E402

PYRADIOMICS = "pyradiomics==3.0.1:pyradiomics-3.0.1/data/"
MNI = "nilearn==0.14.1:nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


#: scans of benchmarks/bench_not_found.py: the tuning part whatever their hash
BENCH_NOT_FOUND = frozenset({"mni152", "dipy", "nibabel", "demo", "ts_abd", "ts_abd_sm", "lits117",
                             "pyradiomics_lung1", "pyradiomics_lung2"})


def held_out(scan_id: str, name: str = "") -> bool:
    """The shared split: a scan of bench_not_found.py is tuning; a new one is held out iff the
    first hex digit of its id's SHA-256 is 8-f."""
    if name in BENCH_NOT_FOUND:
        return False
    return hashlib.sha256(scan_id.encode()).hexdigest()[0] in "89abcdef"


def _slices(vol: Volume, mm: float) -> Volume:
    """``vol`` on slices of ``mm`` along its third axis (a slab average when thicker, linear)."""
    from scipy import ndimage

    f = vol.spacing[2] / mm
    arr = np.asarray(vol.array, np.float32)
    if f < 1:
        arr = ndimage.uniform_filter1d(arr, size=max(1, int(round(1 / f))), axis=2)
    arr = ndimage.zoom(arr, (1, 1, f), order=1)
    m = vol.ijk_to_ras.copy()
    m[:3, 2] = vol.ijk_to_ras[:3, 2] / f
    return Volume(arr, m, "mri", f"{vol.name}#{mm:g}mm")


def heads(cache: Path):
    import nibabel

    b1 = bnf._read(HEADS / "pyradiomics_brain1.nrrd", "mri", "brain1")
    yield PYRADIOMICS + "brain1_image.nrrd", b1
    yield PYRADIOMICS + "brain2_image.nrrd", bnf._read(HEADS / "pyradiomics_brain2.nrrd", "mri", "brain2")
    yield PYRADIOMICS + "brain1_image.nrrd#1mm", _slices(b1, 1.0)
    spec, member = MNI.split(":")
    mni = bnf._read(bnf._pip_member(spec, member, cache), "mri", "mni152")
    yield MNI, mni
    yield MNI + "#6.5mm", _slices(mni, 6.5)
    yield "dipy==1.12.1:dipy/data/files/aniso_vox.nii.gz", bnf._read(HEADS / "dipy_aniso_vox.nii.gz", "mri", "dipy")
    yield (f"nibabel=={nibabel.__version__}:nibabel/tests/data/example4d.nii.gz",
           bnf._read(Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz", "mri", "nibabel"))


def lesion_scans(cache: Path):
    from TextSegLib.models.bundled.cases import get_cases
    from TextSegLib.models.bundled.evaluate import holdout_data

    cases = {c.name: c for c in get_cases(cache)}
    liver = ["liver tumour", "liver", "gallbladder"]
    yield "repo:Resources/samples/abdomen_ct_sample.nii.gz", "demo", holdout_data()[0], liver, None
    for name, spec in (("ts_abd", "totalsegmentator==2.18.0:tests/reference_files/example_ct.nii.gz"),
                       ("ts_abd_sm", "totalsegmentator==2.18.0:tests/reference_files/example_ct_sm.nii.gz"),
                       ("lits117", "liver-ct-segmentation-package==1.6.0:data/img_117.mrc"),
                       ("pyradiomics_lung1", "pyradiomics==3.0.1:pyradiomics-3.0.1/data/lung1_image.nrrd"),
                       ("pyradiomics_lung2", "pyradiomics==3.0.1:pyradiomics-3.0.1/data/lung2_image.nrrd")):
        c = cases[name]
        prompts = ["lung tumour", "left lung", "right lung"] if "lung" in name else liver
        yield spec, name, Volume(c.image, c.ijk_to_ras, "ct", name), prompts, c.labels.get(
            "lung tumor" if "lung" in name else "liver tumor")


def _after(res: EngineResult, vol: Volume) -> EngineResult:
    copy = EngineResult(dict(res.masks), dict(res.probabilities), {}, dict(res.info), dict(res.found), {},
                        dict(res.prompts))
    return apply_presence(copy, vol)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None)
    ap.add_argument("--only", default="", help="heads, lesions")
    args = ap.parse_args()
    import torch

    import TextSegLib
    from TextSegLib.models.bundled import sources
    from TextSegLib.models.bundled.engine import load_bundled_engine

    torch.set_num_threads(1)
    cache = Path(args.cache) if args.cache else sources.cache_dir()
    print(f"TextSegLib from {Path(TextSegLib.__file__).parent}")
    engine = load_bundled_engine()
    if not args.only or "heads" in args.only:
        total = 0
        print("\n== head MRs: absent structures >= 1 mL after the presence step ==")
        for sid, vol in heads(cache):
            assert not held_out(sid, vol.name), f"{sid} is held out"
            prompts = list(engine.vocabulary("mri"))
            scan = bnf.Scan(vol.name.replace("#", "_"), vol, {}, {"*"}, True, sid)
            res = _after(bnf.raw_result(engine, scan, prompts, cache, False), vol)
            ml = float(np.prod(vol.spacing)) / 1000.0
            vols = {p: res.masks[p].sum() * ml for p in prompts}
            fps = sorted(((v, p) for p, v in vols.items() if v >= 1.0), reverse=True)
            total += len(fps)
            print(f"{sid} ({vol.shape}, {vol.spacing[2]:g} mm slices): coverage {res.info.get('coverage', '-')}\n"
                  f"   false >= 1 mL: {len(fps)} ({', '.join(f'{p} {v:.1f} mL' for v, p in fps)})")
        print(f"total false structures >= 1 mL on the head MRs: {total}")
    if not args.only or "lesions" in args.only:
        print("\n== lesion prompts (with their hosts) on the tuning CTs ==")
        for sid, name, vol, prompts, ref in lesion_scans(cache):
            assert not held_out(sid, name), f"{sid} is held out"
            scan = bnf.Scan(f"lesion_{name}", vol, {}, set(), True, sid)
            raw = bnf.raw_result(engine, scan, prompts, cache, False)
            res = _after(raw, vol)
            ml = float(np.prod(vol.spacing)) / 1000.0
            p = prompts[0]
            line = (f"{name}: {p} raw {raw.masks[p].sum() * ml:.1f} mL -> {res.state(p)} "
                    f"{res.masks[p].sum() * ml:.1f} mL")
            if ref is not None:
                line += (f"; reference {ref.sum() * ml:.1f} mL, Dice raw {bnf.dice(raw.masks[p], ref):.3f} "
                         f"after {bnf.dice(res.masks[p], ref):.3f}")
            print(line + f"\n   {res.reasons.get(p, '')}")


if __name__ == "__main__":
    main()
