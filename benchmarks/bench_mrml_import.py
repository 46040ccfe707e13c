"""Time from "engine returned masks" to "segments in the segmentation node" (slicer-core, headless).

20 organ-sized ellipsoid masks on a 512 x 512 x 300 CT-like volume go through
``TextSegLogic.import_result`` (undo snapshot, reuse check, cropped labelmap
write, terminology and colour) exactly as after a real run; then a second
run re-imports them over the first (the "re-run replaces its own segments"
path, which also hashes the existing segments). Target: <= 2 s per 20 masks.

Run:  python benchmarks/bench_mrml_import.py [--masks 20] [--shape 512 512 300]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "TextSeg"), str(ROOT / "Testing")]

ORGANS = [
    "liver", "spleen", "left kidney", "right kidney", "stomach", "pancreas", "gallbladder", "aorta",
    "inferior vena cava", "left lung", "right lung", "heart", "esophagus", "urinary bladder",
    "left adrenal gland", "right adrenal gland", "duodenum", "colon", "small bowel", "trachea",
]


def make_volume_node(env, shape_ijk: tuple[int, int, int]):
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    ni, nj, nk = shape_ijk
    rng = np.random.default_rng(0)
    kji = rng.integers(-1000, 1500, size=(nk, nj, ni), dtype=np.int16)
    image = vtkImageData()
    image.SetDimensions(ni, nj, nk)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(kji.ravel(), deep=1, array_type=4))
    node = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "BenchCT")
    node.SetAndObserveImageData(image)
    node.SetSpacing(0.8, 0.8, 1.5)
    node.SetOrigin(-200.0, -180.0, -400.0)
    return node


def make_masks(shape_ijk: tuple[int, int, int], n: int) -> dict[str, np.ndarray]:
    """Ellipsoids of 2-8 % of the volume's extent per axis, as [i, j, k] views of kji arrays."""
    rng = np.random.default_rng(1)
    ni, nj, nk = shape_ijk
    masks = {}
    for t in range(n):
        kji = np.zeros((nk, nj, ni), dtype=bool)
        r = np.array([rng.uniform(0.04, 0.16) * s for s in (nk, nj, ni)])
        c = np.array([rng.uniform(rr, s - rr) for rr, s in zip(r, (nk, nj, ni))])
        lo = np.maximum((c - r).astype(int), 0)
        hi = np.minimum((c + r).astype(int) + 1, (nk, nj, ni))
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        kji[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = (
            ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        ) <= 1
        masks[ORGANS[t % len(ORGANS)] + ("" if t < len(ORGANS) else f" {t}")] = kji.transpose(2, 1, 0)
    return masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=int, default=20)
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300), metavar=("I", "J", "K"))
    args = ap.parse_args()
    shape = tuple(args.shape)

    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic

    env = make_scene()
    node = make_volume_node(env, shape)
    masks = make_masks(shape, args.masks)
    from TextSegLogicLib.engines import ModelDescription

    logic = TextSegLogic(**env.logics())
    t0 = time.perf_counter()  # resolved as for a free-text model (SAT): every mask keeps its own segment
    from TextSegLogicLib.prompts import resolve_for

    specs = resolve_for(ModelDescription("bench", True, {}), list(masks), "ct")
    t_terms = time.perf_counter() - t0

    t0 = time.perf_counter()
    seg, ids = logic.import_result(node, masks, specs)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg, ids2 = logic.import_result(node, masks, specs, seg)
    t_rerun = time.perf_counter() - t0
    assert ids2 == ids and seg.GetSegmentation().GetNumberOfSegments() == len(masks)
    t0 = time.perf_counter()
    logic.undo(seg)
    t_undo = time.perf_counter() - t0

    vox = int(np.prod(shape))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {__import__('os').cpu_count()} CPU cores, no GPU")
    print(f"volume: {shape} = {vox / 1e6:.1f} M voxels, {len(masks)} masks, "
          f"mean mask {np.mean([m.sum() for m in masks.values()]) / 1e3:.0f} k voxels")
    print(f"resolve prompts (knowledge tree):      {t_terms:6.3f} s")
    print(f"import into new segmentation:          {t_first:6.3f} s  ({t_first / len(masks) * 1e3:.0f} ms/mask)  target <= 2 s")
    print(f"re-run import (replace own segments):  {t_rerun:6.3f} s  ({t_rerun / len(masks) * 1e3:.0f} ms/mask)")
    print(f"undo (restore snapshot):               {t_undo:6.3f} s")


if __name__ == "__main__":
    main()
