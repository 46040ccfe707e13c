"""Seeded segmentation back-ends used by the built-in refiner.

Each back-end takes an ROI image, a seed label array (0 unknown,
:data:`FG` foreground, :data:`BG` background) and the voxel spacing and
returns a bool foreground array. The candidates (GrowCut from slicer-core,
scikit-image random walker, SimpleITK confidence-connected growing) were
compared by ``benchmarks/bench_refine.py``; the built-in engine uses the
best one available.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

FG, BG = 1, 2

Backend = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _to_vtk(array: np.ndarray, spacing: np.ndarray, vtk_type: int):
    import vtk
    from vtk.util import numpy_support

    img = vtk.vtkImageData()
    img.SetDimensions(*array.shape)
    img.SetSpacing(*[float(s) for s in spacing])
    flat = np.ascontiguousarray(array.ravel(order="F"))
    data = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk_type)
    img.GetPointData().SetScalars(data)
    return img


def _growcut_class():
    """``vtkImageGrowCutSegment`` from PyPI slicer-core, or from 3D Slicer itself."""
    try:
        from slicer_core.vtkSlicerSegmentationsModuleLogic import vtkImageGrowCutSegment
    except ImportError:
        import slicer  # inside the 3D Slicer application

        vtkImageGrowCutSegment = slicer.vtkImageGrowCutSegment
    return vtkImageGrowCutSegment


def growcut_available() -> bool:
    try:
        _growcut_class()
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def growcut(image: np.ndarray, seeds: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Slicer's GrowCut ("Grow from seeds") on the ROI."""
    import vtk
    from vtk.util import numpy_support
    if not (seeds == FG).any() or not (seeds == BG).any():
        return seeds == FG
    # GrowCut leaves the outermost voxel layer out of its propagation: pad by
    # one replicated layer so seeds on the ROI faces take part.
    image_p = np.pad(image.astype(np.float32), 1, mode="edge")
    seeds_p = np.pad(seeds.astype(np.int16), 1, mode="edge")
    seg = _growcut_class()()
    seg.SetIntensityVolume(_to_vtk(image_p, spacing, vtk.VTK_FLOAT))
    seg.SetSeedLabelVolume(_to_vtk(seeds_p, spacing, vtk.VTK_SHORT))
    seg.SetDistancePenalty(0.0)
    seg.Update()
    out = numpy_support.vtk_to_numpy(seg.GetOutput().GetPointData().GetScalars())
    return out.reshape(image_p.shape, order="F")[1:-1, 1:-1, 1:-1] == FG


def random_walker(image: np.ndarray, seeds: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """scikit-image random walker (conjugate gradient, Jacobi preconditioner)."""
    from skimage.segmentation import random_walker as rw

    if not (seeds == FG).any() or not (seeds == BG).any():
        return seeds == FG
    scale = float(np.std(image)) or 1.0
    labels = rw(
        (image - image.mean()) / scale, seeds.astype(np.int32), beta=130, mode="cg_j",
        tol=1e-2, spacing=tuple(float(s) for s in spacing), return_full_prob=False,
    )
    return labels == FG


def confidence_connected(image: np.ndarray, seeds: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """SimpleITK confidence-connected growing from the foreground seeds.

    Unknown voxels become foreground when the growing reaches them and no
    background seed is in the grown region's way (background seeds are
    walls).
    """
    import SimpleITK as sitk

    fg = seeds == FG
    unknown = seeds == 0
    if not unknown.any() or not fg.any():
        return fg
    # seed the growing from foreground voxels that touch the unknown zone
    from scipy import ndimage

    touch = fg & ndimage.binary_dilation(unknown)
    pts = np.argwhere(touch)
    if len(pts) == 0:
        return fg
    if len(pts) > 200:
        pts = pts[np.linspace(0, len(pts) - 1, 200).astype(int)]
    walled = np.where(seeds == BG, np.float32(-1e6), image.astype(np.float32))
    img = sitk.GetImageFromArray(np.ascontiguousarray(walled.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    grown = sitk.ConfidenceConnected(
        img, seedList=[tuple(int(v) for v in p) for p in pts], numberOfIterations=2,
        multiplier=2.5, initialNeighborhoodRadius=1, replaceValue=1,
    )
    region = sitk.GetArrayFromImage(grown).transpose(2, 1, 0).astype(bool)
    return fg | (region & unknown)


BACKENDS: dict[str, Backend] = {
    "growcut": growcut,
    "random_walker": random_walker,
    "confidence_connected": confidence_connected,
}


def default_backend() -> str:
    """The back-end the benchmark measured best, if it is installed."""
    return "growcut" if growcut_available() else "random_walker"
