"""Helpers for the TextSeg module tests: paths, a headless scene, and a small real engine.

:class:`LungThresholdEngine` implements the Engine protocol with classic
image processing (air threshold, removal of air connected to the outside,
connected components, left/right split by RAS x). It works on chest CT such
as ``CTChest4.nrrd`` and exists so the MRML plumbing can be tested with a
fast engine that truly segments.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "Testing" / "Data"
for p in (ROOT / "TextSeg", ROOT / "Testing"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from TextSegLib.engine.base import CancelToken, EngineResult, ProgressCallback  # noqa: E402
from TextSegLib.errors import TerminologyError  # noqa: E402
from TextSegLib.volume import Volume  # noqa: E402

CT_CHEST = DATA / "slicerio" / "CTChest4.nrrd"
CT_CHEST_SEG = DATA / "slicerio" / "Segmentation.seg.nrrd"


class LungThresholdEngine:
    """Lungs of a chest CT by thresholding; processes the volume in slabs ("tiles")."""

    name = "lung-threshold"
    terms = ("left lung", "right lung", "lung", "lungs")

    def __init__(self, slab: int = 4, gate: threading.Event | None = None) -> None:
        self.slab = slab
        self.gate = gate  # when set by a test, each tile waits for it (to test cancel mid-run)
        self.tiles_run = 0

    def vocabulary(self, modality: str) -> list[str]:
        return list(self.terms) if modality in ("ct", "") else []

    def segment(
        self,
        volume: Volume,
        prompts: Sequence[str],
        *,
        modality: str | None = None,
        roi_ras=None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> EngineResult:
        from TextSegLib.knowledge.resolved import engine_prompts

        resolved = engine_prompts(self, prompts, modality or volume.modality)
        bad = [p.text for p in resolved if p.term.lower() not in self.terms]
        if bad:
            raise TerminologyError(f"{self.name} cannot segment {bad}.", f"It knows: {', '.join(self.terms)}.")
        a = volume.array
        nk = a.shape[2]
        air = np.zeros(a.shape, dtype=bool)
        starts = list(range(0, nk, self.slab))
        for n, k0 in enumerate(starts):
            if cancel is not None:
                cancel.check()
            if self.gate is not None:
                self.gate.wait(5)
            sl = a[:, :, k0 : k0 + self.slab]
            slab_air = sl < -400
            for k in range(slab_air.shape[2]):  # drop air connected to the image border (outside the body)
                lab, _ = ndimage.label(slab_air[:, :, k])
                border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
                slab_air[:, :, k] &= ~np.isin(lab, border)
            air[:, :, k0 : k0 + self.slab] = slab_air
            self.tiles_run += 1
            if progress is not None:
                progress("tiles", n + 1, len(starts))
        lab, n = ndimage.label(air)
        sizes = np.bincount(lab.ravel())[1:]
        keep = np.argsort(sizes)[::-1][:2] + 1
        lungs = np.isin(lab, keep)
        lungs = ndimage.binary_closing(lungs, iterations=2)
        # left/right by the RAS x of each voxel's I index (RAS x grows to the patient's right)
        x = volume.ijk_to_ras_points(np.stack([np.arange(a.shape[0]), np.zeros(a.shape[0]), np.zeros(a.shape[0])], 1))[:, 0]
        mid = np.median(x[np.nonzero(lungs.any(axis=(1, 2)))[0]])
        left_side = (x < mid)[:, None, None]
        out = {"left lung": lungs & left_side, "right lung": lungs & ~left_side}
        out["lung"] = out["lungs"] = lungs
        masks = {p.text: out[p.term.lower()] for p in resolved}
        return EngineResult(masks=masks, timings={}, info={"engine": self.name},
                            prompts={p.text: p for p in resolved})


def wait_for_download(ctrl, timeout: float = 60.0) -> None:
    """Poll the panel controller until its download child has ended (or ``timeout`` s passed)."""
    t0 = time.time()
    while ctrl.download_job is not None and time.time() - t0 < timeout:
        ctrl._poll_aux()
        time.sleep(0.1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * float(np.logical_and(a, b).sum()) / float(s)


def reference_segment(name: str) -> np.ndarray:
    """A segment of the fixture ``Segmentation.seg.nrrd`` as a bool ``[i, j, k]`` array."""
    import slicerio

    seg = slicerio.read_segmentation(str(CT_CHEST_SEG))
    s = next(x for x in seg["segments"] if x["name"] == name)
    vox = seg["voxels"]
    if vox.ndim == 4:
        return vox[..., s["layer"]] == s["labelValue"]
    return vox == s["labelValue"]
