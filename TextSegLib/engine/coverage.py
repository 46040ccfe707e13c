"""Which part of the body a scan shows, read from the image itself (never from its name).

:func:`scan_coverage` looks at every axial slice (the array axis closest to the patient's
superior direction) of a coarse copy of the scan and labels it:

* ``"head"`` and ``"neck"`` (:mod:`.headneck`, MR and CT, any slice thickness): a core of
  slices with one head-sized (15-350 cm²) outline, longer front-to-back than side-to-side (a
  trunk, a neck with shoulders or a pelvis is wider than deep), on CT holding bone (> 300 HU,
  the skull), measured even where a tight field of view cuts the nose or the back of the head;
  from it, the slices above and below whose body lies inside the head's footprint (vertex,
  skull base, face, and below them the neck, down to the shoulders);
* ``"lungs"``: CT only, air (< -500 HU) inside the body that belongs to a large air body
  (≥ 300 mL) and fills ≥ 15 % of the slice's body outline: a slice through the lungs;
* ``""``: nothing can be said (cropped outline, several bodies, anything else).

On CT it also marks slices with **large bone off the midline** (a 2D bone component of
≥ 6 cm² inside the trunk's outline whose centre lies more than a quarter of the outline's
half-width from the midline: iliac wings, femurs, also shoulders). A pelvic or lower-limb
structure needs such slices near it; a trunk slice without them (upper abdomen) has no
gluteus, hip bone or femur.

It also gives the trunk outline (the main outline less any arm joined to it by a thin bridge)
and the body midline (RAS x of the trunk outline's centre)
per slice, which the presence step uses for laterality. Axes follow RAS: +x is the
patient's right, so a left-sided structure has a smaller x than the midline
(checked on TotalSegmentator's example CT: left kidney x = -76 mm, right kidney +64 mm,
body centre -5 mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .headneck import CT_BONE_HU, SliceShape, edge_fraction, head_and_neck, is_head_core
from .resample import ras_axes

#: Slice kinds and what they show, for reasons given to the user.
KIND_TEXT = {"head": "a head-sized, head-shaped cross-section", "neck": "the skull base or neck below a head",
             "lungs": "the lungs"}

LUNG_MIN_ML = 300.0
LUNG_MIN_FRACTION = 0.15
BRIDGE_MM = 20.0  # an arm lying against the trunk joins it through a bridge thinner than 2 × this
LATERAL_BONE_CM2 = 6.0
LATERAL_BONE_OFFSET = 0.25
CT_BODY_HU = -300.0
CT_AIR_HU = -500.0
COARSE_MM = 3.0


@dataclass
class Coverage:
    """Per-slice findings on the scan's own grid (slice = index along ``s_axis``)."""

    s_axis: int
    lr_axis: int
    ap_axis: int
    kinds: np.ndarray  # str per slice: "", "head", "neck", "lungs"
    midline_x: np.ndarray  # RAS x of the main outline's centre per slice (nan: unknown)
    body: np.ndarray  # bool, coarse grid: the main outline per slice (filled), or all-true where cropped
    step: tuple[int, int, int]
    #: CT: slice shows large bone off the midline (None: not assessed, e.g. MR)
    lateral_bone: np.ndarray | None = None
    slice_mm: float = 1.0
    s_sign: int = 1  # +1: a higher slice index is more superior

    def above_lungs(self, idx: np.ndarray) -> float | None:
        """Fraction of the voxels ``idx`` in slices superior to every slice through the lungs
        (``None`` when no slice shows the lungs)."""
        rows = np.flatnonzero(self.kinds == "lungs")
        if len(rows) == 0:
            return None
        s = idx[:, self.s_axis]
        above = s > rows.max() if self.s_sign > 0 else s < rows.min()
        return float(above.mean()) if len(s) else 0.0

    def near_lateral_bone(self, idx: np.ndarray, margin_mm: float = 60.0) -> float | None:
        """Fraction of the voxels ``idx`` within ``margin_mm`` (along the slices) of a slice with
        large bone off the midline; ``None`` where that was not assessed."""
        if self.lateral_bone is None:
            return None
        r = int(round(margin_mm / self.slice_mm))
        near = ndimage.binary_dilation(self.lateral_bone, iterations=r) if r > 0 else self.lateral_bone
        per_slice = self._per_slice(idx)
        total = per_slice.sum()
        return float(per_slice[near].sum() / total) if total else 0.0

    def _per_slice(self, idx: np.ndarray) -> np.ndarray:
        return np.bincount(idx[:, self.s_axis], minlength=len(self.kinds)).astype(np.float64)

    def slice_kinds(self, idx: np.ndarray) -> dict[str, float]:
        """Fraction of the voxels ``idx`` ((N, 3) indices on the scan's grid) in slices of each kind."""
        per_slice = self._per_slice(idx)
        total = per_slice.sum()
        if total == 0:
            return {}
        return {k: float(per_slice[self.kinds == k].sum() / total) for k in KIND_TEXT}

    def midline_for(self, idx: np.ndarray) -> float:
        """Body midline (RAS x) over the slices of the voxels ``idx``, weighted by them (nan: unknown)."""
        per_slice = self._per_slice(idx)
        ok = np.isfinite(self.midline_x) & (per_slice > 0)
        if not ok.any():
            return float("nan")
        return float(np.average(self.midline_x[ok], weights=per_slice[ok]))

    def inside_body(self, idx: np.ndarray) -> float:
        """Fraction of the voxels ``idx`` inside the main body outline of their slice."""
        if len(idx) == 0:
            return 0.0
        c = np.minimum(idx // np.asarray(self.step), np.asarray(self.body.shape) - 1)
        return float(self.body[c[:, 0], c[:, 1], c[:, 2]].mean())

    def summary(self) -> str:
        n = len(self.kinds)
        parts = [f"{int((self.kinds == k).sum())} of {n} slices show {t}" for k, t in KIND_TEXT.items()
                 if (self.kinds == k).any()]
        return "; ".join(parts) if parts else f"none of {n} slices is recognised"


def _body_threshold(a: np.ndarray, modality: str) -> float:
    if modality == "ct":
        return CT_BODY_HU
    import SimpleITK as sitk

    vals = a[np.isfinite(a)]
    if vals.size == 0 or float(vals.max()) <= float(vals.min()):
        return float("inf")
    f = sitk.OtsuThresholdImageFilter()
    f.SetInsideValue(0)
    f.SetOutsideValue(1)
    f.Execute(sitk.GetImageFromArray(vals.astype(np.float32).reshape(1, 1, -1)))
    return 0.5 * float(f.GetThreshold())


def scan_coverage(volume: Volume, modality: str | None = None) -> Coverage:
    """Slice kinds, body outline and midline of ``volume`` (see the module docstring)."""
    modality = modality or volume.modality or ""
    perm, _ = ras_axes(volume.direction)
    lr, ap, s_axis = perm
    spacing = np.asarray(volume.spacing, dtype=np.float64)
    step = tuple(int(max(1, round(COARSE_MM / sp))) if ax != s_axis else 1
                 for ax, sp in enumerate(spacing))
    a = np.asarray(volume.array[::step[0], ::step[1], ::step[2]], dtype=np.float32)
    csp = spacing * np.asarray(step)
    pix_cm2 = float(np.prod([csp[ax] for ax in range(3) if ax != s_axis])) / 100.0
    voxel_ml = float(np.prod(csp)) / 1000.0
    body = a > _body_threshold(a, modality)

    n = a.shape[s_axis]
    axes2 = [ax for ax in range(3) if ax != s_axis]  # in-plane axes of a slice, in order
    lr2, ap2 = axes2.index(lr), axes2.index(ap)
    midline = np.full(n, np.nan)
    main = np.zeros_like(body)  # main outline per slice; all true where the outline is cropped
    filled = np.zeros_like(body)  # every outline of the slice, holes filled
    shapes: list[SliceShape | None] = []
    outlines: list[np.ndarray | None] = []
    lateral = np.zeros(n, bool)
    bridge_vox = max(1, int(round(BRIDGE_MM / float(min(csp[lr], csp[ap])))))
    for k in range(n):
        sl = _slice(s_axis, k)
        filled[sl] = ndimage.binary_fill_holes(ndimage.binary_opening(body[sl]))
        lab, nlab = ndimage.label(filled[sl])
        if nlab == 0:
            shapes.append(None)
            outlines.append(None)
            continue
        sizes = np.bincount(lab.ravel())[1:]
        big = int(np.argmax(sizes)) + 1
        comp = lab == big
        cropped = comp[0, :].any() or comp[-1, :].any() or comp[:, 0].any() or comp[:, -1].any()
        if modality == "ct":
            outline = filled[sl] if cropped else comp
            xs = np.nonzero(outline.any(axis=1 - lr2))[0]
            lateral[k] = _lateral_bone(a[sl], outline, (xs[0] + xs[-1]) / 2.0, (xs[-1] - xs[0] + 1) / 2.0,
                                       lr2, pix_cm2)
        idx = np.argwhere(comp)
        ext = idx.max(0) - idx.min(0) + 1
        if cropped:  # only the head test measures it (a tight head field of view); no trunk, no midline
            main[sl] = True
            trunk = comp
        else:
            trunk = _without_limbs(comp, bridge_vox)
            main[sl] = trunk
            centre = np.zeros(3)
            centre[axes2] = np.argwhere(trunk).mean(0) * np.asarray(step)[axes2]
            centre[s_axis] = k * step[s_axis]
            midline[k] = float((volume.ijk_to_ras @ np.r_[centre, 1.0])[0])
        bone = float((a[sl][trunk] > CT_BONE_HU).mean()) if modality == "ct" else None
        shapes.append(SliceShape(sizes[big - 1] * pix_cm2, ext[lr2] * csp[lr], ext[ap2] * csp[ap],
                                 bool(sizes[big - 1] >= 0.9 * sizes.sum()),
                                 edge_fraction(comp) if cropped else 0.0, bone))
        outlines.append(comp)
    lungs = None
    if modality == "ct":
        air = ndimage.binary_opening((a < CT_AIR_HU) & filled, iterations=1)
        lab3, n3 = ndimage.label(air)
        vols = np.bincount(lab3.ravel())[1:] * voxel_ml if n3 else np.zeros(0)
        lungs = np.isin(lab3, np.flatnonzero(vols >= LUNG_MIN_ML) + 1)
    at_lungs = np.zeros(n, bool)
    for k in range(n):
        sl = _slice(s_axis, k)
        core = is_head_core(shapes[k])
        if not core and lungs is not None and filled[sl].any() \
                and lungs[sl].sum() >= LUNG_MIN_FRACTION * filled[sl].sum():
            at_lungs[k] = True
    s_sign = 1 if volume.ijk_to_ras[2, s_axis] >= 0 else -1
    kinds = head_and_neck(shapes, outlines, [filled[_slice(s_axis, k)] for k in range(n)], at_lungs,
                          float(csp[s_axis]), float(np.sqrt(csp[lr] * csp[ap])), s_sign)
    kinds[at_lungs] = "lungs"
    return Coverage(s_axis=s_axis, lr_axis=lr, ap_axis=ap, kinds=kinds, midline_x=midline,
                    body=main, step=step, lateral_bone=lateral if modality == "ct" else None,
                    slice_mm=float(csp[s_axis]), s_sign=s_sign)


def _without_limbs(outline: np.ndarray, r: int) -> np.ndarray:
    """The trunk of a slice's outline: an opening of radius ``r`` cuts thin bridges (an arm
    lying against the flank), then the largest piece is kept (the outline itself if nothing is left)."""
    opened = ndimage.binary_opening(outline, structure=ndimage.generate_binary_structure(2, 1), iterations=r)
    lab, n = ndimage.label(opened)
    if n == 0:
        return outline
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def _lateral_bone(hu: np.ndarray, outline: np.ndarray, mid: float, half: float, lr2: int,
                  pix_cm2: float) -> bool:
    """Whether a CT slice has a bone component of LATERAL_BONE_CM2 or more off the midline."""
    lab, n = ndimage.label((hu > CT_BONE_HU - 100.0) & outline)
    for i, slc in enumerate(ndimage.find_objects(lab), start=1):
        local = lab[slc] == i
        if local.sum() * pix_cm2 < LATERAL_BONE_CM2:
            continue
        centre = np.argwhere(local)[:, lr2].mean() + slc[lr2].start
        if abs(centre - mid) > LATERAL_BONE_OFFSET * half:
            return True
    return False


def _slice(axis: int, k: int) -> tuple:
    sl: list = [slice(None)] * 3
    sl[axis] = k
    return tuple(sl)
