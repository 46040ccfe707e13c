"""Benchmark of point refinement (issue 7): accuracy per click and latency.

Accuracy: the simulated-click protocol of ``clicks.py`` on real fixtures
(TotalSegmentator example CT: liver, spleen, kidneys, aorta; slicerio
CTChest4: lungs), each degraded three ways (erosion, dilation, missing
part) to about 0.70 Dice. Every back-end of ``TextSegLib.refine.algorithms``
is run on the same cases so the built-in default is chosen on measurements.
Each run's clicks go through one ``RefineSession`` (negative clicks keep
acting in later calls), as in the Slicer module; ``--no-session`` compares
with independent ``refine()`` calls.

Latency: the default back-end on a synthetic 512x512x300 CT (the example CT
upsampled, declared spacing 0.78 x 0.78 x 1.0 mm), clicks from the same
protocol; p50/p95 per click and peak memory.

Cases added for issue 7's list: LiTS case 117 (liver, liver tumour; 128^3 at
1.5 mm, native) and the pyradiomics lung1/lung2 lesions (native 0.57-0.63 x
5 mm, cropped to the lesion + 80 mm), read from the bundled-model training
cache; they are skipped with a printed reason when that cache lacks them.

Usage: python benchmarks/bench_refine.py [--backends growcut,confidence_connected,random_walker]
       [--clicks 20] [--no-latency] [--no-accuracy] [--no-session] [--only lits,pyradiomics] [--fetch]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clicks import ClickRun, degrade, dice, next_click, simulate  # noqa: E402

from TextSegLib.refine import BuiltinRefiner, RefineSession, refine  # noqa: E402
from TextSegLib.refine.files import _sitk_read, _sitk_to_volume, read_image  # noqa: E402
from TextSegLib.volume import Volume, make_ijk_to_ras  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "Testing" / "Data"
# TotalSegmentator 'total' class map (totalsegmentator/map_to_binary.py, v2.18.0)
CT_ORGANS = {"liver": 5, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "aorta": 52}
# slicerio Segmentation.seg.nrrd label values (segment names in its header)
CHEST = {"right_lung": 5, "left_lung": 6}
KINDS = ("erode", "dilate", "missing")
CROP_MM = 80.0


def cases(fetch: bool = False):
    """``(name, volume, reference mask)`` for every benchmark structure, fixtures first."""
    ct = read_image(DATA / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = _sitk_to_volume(_sitk_read(DATA / "totalsegmentator" / "example_seg.nii.gz"), "seg").array
    for name, lab in CT_ORGANS.items():
        yield f"ts-ct/{name}", ct, seg == lab
    chest = read_image(DATA / "slicerio" / "CTChest4.nrrd")
    cseg = _sitk_to_volume(_sitk_read(DATA / "slicerio" / "Segmentation.seg.nrrd"), "seg").array
    for name, lab in CHEST.items():
        yield f"ctchest4/{name}", chest, cseg == lab
    yield from training_cases(fetch)


def _crop(vol: Volume, masks: dict[str, np.ndarray], margin_mm: float = CROP_MM):
    """The volume and masks cut to the masks' bounding block plus ``margin_mm``.

    Keeps the protocol's whole-volume error analysis cheap on 512x512 scans; the
    margin exceeds the refiner's ROI (60 mm around a click), so no click's ROI
    is cut by the crop except where the scan itself ends.
    """
    idx = np.argwhere(np.logical_or.reduce(list(masks.values())))
    half = np.ceil(margin_mm / vol.spacing).astype(int)
    lo = np.maximum(idx.min(0) - half, 0)
    hi = np.minimum(idx.max(0) + half + 1, vol.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shift = np.eye(4)
    shift[:3, 3] = lo
    out = Volume(np.ascontiguousarray(vol.array[sl]), vol.ijk_to_ras @ shift, vol.modality, vol.name)
    return out, {k: np.ascontiguousarray(m[sl]) for k, m in masks.items()}


def training_cases(fetch: bool = False):
    """LiTS case 117 (liver, liver tumour) and the two pyradiomics lung lesions, at
    their NATIVE resolution, from the bundled-model training cache
    (``TextSegLib.models.bundled.sources``; the 3 mm model-grid copies in
    ``cases.get_cases`` are not used). Missing data is reported and skipped
    unless ``fetch`` (then the sources' own downloaders are called)."""
    from TextSegLib.models.bundled import sources

    cache = sources.cache_dir()
    lits = cache / "liver_ct_segmentation_package" / "data"
    if fetch:
        lits = sources.liver_data(cache)
    if (lits / "img_117.mrc").exists() and (lits / "lab_117.mrc").exists():
        # same reading and geometry as cases.lits_case (its docstring: 128^3 crop, no spacing in
        # the header, 1.5 mm isotropic assumed, axes inferior / posterior / patient-right)
        img = np.fromfile(lits / "img_117.mrc", dtype="<f4", offset=1024).reshape(128, 128, 128)
        lab = np.fromfile(lits / "lab_117.mrc", dtype="<u2", offset=1024).reshape(128, 128, 128)
        direction = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], dtype=np.float64)
        vol = Volume(img.astype(np.float32), make_ijk_to_ras((1.5, 1.5, 1.5), (0.0, 0.0, 0.0), direction), "ct", "lits_117")
        yield "lits117/liver", vol, lab > 0
        yield "lits117/liver_tumor", vol, lab == 2
    else:
        print(f"SKIPPED lits117/liver, lits117/liver_tumor: LiTS case 117 not found in {lits} "
              "(fetched by the bundled-model data code; rerun with --fetch to download it)", flush=True)
    pyr = cache / f"pyradiomics-{sources.PYRADIOMICS_VERSION}" / "data"
    if fetch:
        pyr = sources.pyradiomics_data(cache)
    for k in (1, 2):
        img_p, lab_p = pyr / f"lung{k}_image.nrrd", pyr / f"lung{k}_label.nrrd"
        if not (img_p.exists() and lab_p.exists()):
            print(f"SKIPPED pyradiomics/lung{k}_tumor: {img_p.name} / {lab_p.name} not found in {pyr} "
                  "(rerun with --fetch to download them)", flush=True)
            continue
        vol = read_image(img_p)
        lab = read_image(lab_p)
        if lab.shape != vol.shape:
            print(f"SKIPPED pyradiomics/lung{k}_tumor: label grid {lab.shape} differs from image {vol.shape}")
            continue
        vol, m = _crop(vol, {"t": lab.array > 0})
        yield f"pyradiomics/lung{k}_tumor", vol, m["t"]


def stepper(vol: Volume, refiner: BuiltinRefiner, session: bool = True):
    """One simulated run's click step: through a :class:`RefineSession` (default) or bare ``refine``."""
    state: dict = {}

    def step(mask, ijk, positive):
        pts = [ijk]
        if not session:
            return refine(vol, mask, pts if positive else (), () if positive else pts,
                          points_space="ijk", engine=refiner).mask
        if "s" not in state:  # the protocol's first mask starts the session
            state["s"] = RefineSession(vol, mask, engine=refiner)
        return state["s"].add(pts if positive else (), () if positive else pts, points_space="ijk").mask
    return step


def summarise(label: str, runs: list[ClickRun], n_clicks: int) -> None:
    at = lambda n: np.mean([r.at(n) for r in runs])  # noqa: E731
    secs = np.concatenate([r.seconds for r in runs]) * 1000
    marks = [n for n in (0, 1, 3, 5, 10, 20) if n <= n_clicks]
    print(f"  {label:28s} n={len(runs):2d} " + " ".join(f"D@{n}={at(n):.3f}" for n in marks)
          + f" gain@5={at(min(5, n_clicks)) - at(0):+.3f}"
          + f" NoC85(med)={np.median([r.noc(0.85, n_clicks) for r in runs]):.0f}"
          + f" NoC90(med)={np.median([r.noc(0.90, n_clicks) for r in runs]):.0f}"
          + f" drop-after-peak(max)={max(max(r.dices) - r.dices[-1] for r in runs):.3f}"
          + f" ms/click p50={np.percentile(secs, 50):.0f} p95={np.percentile(secs, 95):.0f}")


def accuracy(backends: list[str], n_clicks: int, session: bool = True, only: str = "", fetch: bool = False,
             kinds: tuple[str, ...] = KINDS) -> None:
    how = "one RefineSession per run" if session else "independent refine() calls"
    print(f"== accuracy: simulated clicks (cap {n_clicks}, {how}), start ~0.70 Dice ==")
    all_runs: dict[str, list[tuple[str, ClickRun]]] = {b: [] for b in backends}
    for name, vol, ref in cases(fetch):
        if only and not any(o in name for o in only.split(",")):
            continue
        sp = "x".join(f"{v:.3g}" for v in vol.spacing)
        for kind in kinds:
            start = degrade(ref, kind, vol.spacing)
            for b in backends:
                run = simulate(start, ref, vol.spacing, stepper(vol, BuiltinRefiner(backend=b), session), n_clicks)
                all_runs[b].append((name, run))
                print(f"{name:26s} {kind:8s} {b:13s} " + " ".join(
                    f"{run.at(n):.3f}" for n in (0, 1, 3, 5, 10, 20) if n <= n_clicks)
                    + f"  NoC85={run.noc(0.85, n_clicks):2d} NoC90={run.noc(0.90, n_clicks):2d}"
                    + f"  last={run.dices[-1]:.3f}  [{vol.shape} @ {sp} mm]", flush=True)
    print("== summary (mean Dice over cases; NoC median; per-click latency on these volumes) ==")
    for b in backends:
        runs = all_runs[b]
        if not runs:
            continue
        summarise(f"{b} ALL", [r for _, r in runs], n_clicks)
        for group in dict.fromkeys(n.split("/")[0] for n, _ in runs):
            summarise(f"{b} {group}", [r for n, r in runs if n.split("/")[0] == group], n_clicks)


def latency(n_clicks: int = 25, margin_mm: float | None = None, session: bool = True) -> None:
    how = "one RefineSession" if session else "independent refine() calls"
    print(f"== latency: 512x512x300 int16 CT (upsampled example CT, spacing 0.78x0.78x1.0 mm), {how} ==")
    ct = read_image(DATA / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = _sitk_to_volume(_sitk_read(DATA / "totalsegmentator" / "example_seg.nii.gz"), "seg").array
    target = np.array([512, 512, 300])
    rep = -(-target // np.array(ct.shape))
    up = lambda a: np.repeat(np.repeat(np.repeat(a, rep[0], 0), rep[1], 1), rep[2], 2)[:512, :512, :300]  # noqa: E731
    img = ndimage.uniform_filter(up(ct.array).astype(np.float32), 3).astype(np.int16)
    vol = Volume(img, make_ijk_to_ras([0.78, 0.78, 1.0], ct.origin, ct.direction), "ct", "synthetic-512")
    del img
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kw = {} if margin_mm is None else {"roi_margin_mm": margin_mm}
    for organ in ("liver", "kidney_left"):
        ref = up(seg == CT_ORGANS[organ])
        idx = np.argwhere(ref)
        crop = tuple(slice(max(0, a - 30), b + 31) for a, b in zip(idx.min(0), idx.max(0)))
        ref_c = ref[crop]
        off = np.array([c.start for c in crop])
        mask = np.zeros(vol.shape, bool)
        mask[crop] = degrade(ref_c, "erode", vol.spacing)
        refiner = BuiltinRefiner()
        t0 = time.perf_counter()
        refine(vol, mask, [np.argwhere(ref_c & ~mask[crop])[0] + off], points_space="ijk", engine=refiner, **kw)
        cold = time.perf_counter() - t0
        ms, dices = [], [dice(mask[crop], ref_c)]
        sess = RefineSession(vol, mask, engine=refiner, **kw) if session else None
        for _ in range(n_clicks):  # the protocol's clicks, computed on the organ's crop only
            click = next_click(mask[crop], ref_c, vol.spacing)
            if click is None:
                break
            pts = [click[0] + off]
            t0 = time.perf_counter()
            if sess is not None:
                res = sess.add(pts if click[1] else (), () if click[1] else pts, points_space="ijk")
            else:
                res = refine(vol, mask, pts if click[1] else (), () if click[1] else pts,
                             points_space="ijk", engine=refiner, **kw)
            ms.append((time.perf_counter() - t0) * 1000)
            mask = res.mask
            dices.append(dice(mask[crop], ref_c))
        ms_a = np.array(ms)
        tracemalloc.start()
        refine(vol, mask, [click[0] + off] if click else [idx[0]], points_space="ijk", engine=refiner, **kw)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"  {organ:12s} first call {cold * 1000:.0f} ms (imports); then {len(ms)} clicks: "
              f"p50={np.percentile(ms_a, 50):.0f} ms p95={np.percentile(ms_a, 95):.0f} ms max={ms_a.max():.0f} ms; "
              f"Dice {dices[0]:.3f} -> {dices[min(5, len(dices) - 1)]:.3f} (5 clicks) -> {dices[-1]:.3f} ({len(ms)}); "
              f"memory allocated by one refine call: peak {peak:.0f} MiB",
              flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  memory: volume {vol.array.nbytes / 2**20:.0f} MiB int16, each mask {ref.nbytes / 2**20:.0f} MiB; "
          f"peak RSS {rss:.0f} MiB (after building the volume {rss0:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="growcut,confidence_connected,random_walker")
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--no-session", action="store_true", help="independent refine() calls instead of a RefineSession")
    ap.add_argument("--margin", type=float, default=None, help="roi_margin_mm for the latency run")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run (default: all)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="degradations to run")
    ap.add_argument("--fetch", action="store_true", help="download missing training scans (LiTS, pyradiomics)")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, no GPU; "
          f"python {platform.python_version()}")
    if not args.no_accuracy:
        accuracy([b.strip() for b in args.backends.split(",") if b.strip()], args.clicks, not args.no_session,
                 args.only, args.fetch, tuple(k for k in args.kinds.split(",") if k))
    if not args.no_latency:
        latency(margin_mm=args.margin, session=not args.no_session)


if __name__ == "__main__":
    main()
