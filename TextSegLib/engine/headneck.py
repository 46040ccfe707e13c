"""Head and neck slices of a scan, from each slice's body outline (MR and CT, any slice thickness).

:func:`.coverage.scan_coverage` measures every axial slice's outline (:class:`SliceShape`);
:func:`head_and_neck` then labels the slices:

* **head core**: one outline of head size (15-350 cm²), deeper than wide, on CT holding bone
  (the skull). A tight head field of view cuts the nose or the back of the head: an outline
  that touches the edge of the field of view along at most :data:`EDGE_MAX` of its boundary is
  still measured (its extents are then lower bounds);
* **head** and **neck**: from a convincing core (at least :data:`CORE_MIN_MM` of slices clearly
  deeper than wide, a head's ellipse; a trunk, a neck with shoulders or a pelvis is wider than
  deep) the label spreads slice by slice, up and down, over every slice whose whole body
  (every outline of the slice) is head-sized and lies inside the core's footprint (the
  outlines of the core slices, widened by :data:`FOOTPRINT_MM`): the vertex above, the skull
  base, face, cerebellum and neck below. The shoulders are wider than the head and stop it, so
  do the lungs, a slice cut by the field of view and an empty slice. Below the core a slice
  keeps "head" while its outline holds at least :data:`BASE_FRACTION` of the core's largest
  cross-section (skull base, face); smaller ones, and all below them, are "neck" (core slices
  too: a neck is often as deep as it is wide).

:func:`head_neck_reason` is the presence rule that reads the "neck" slices: no abdominal,
pelvic or lower-limb structure, and no psoas, lies in the neck or the head above it (thoracic
structures may: the trachea, the oesophagus and the lung apices reach the root of the neck).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

HEAD_AREA_CM2 = (15.0, 350.0)
HEAD_MAX_LR_OVER_AP = 1.0
#: a convincing head core: at least this long (mm) of slices this much deeper than wide
CORE_LR_OVER_AP = 0.9
CORE_MIN_MM = 20.0
#: an outline touching the field of view's edge along at most this fraction of its boundary is measured
EDGE_MAX = 0.15
#: a slice below or above the core belongs to it when this fraction of its body lies in the footprint
FOOTPRINT_MM = 15.0
INSIDE_FRACTION = 0.9
#: below the core: "head" while the outline holds this fraction of the core's largest cross-section
BASE_FRACTION = 0.6
CT_BONE_HU = 300.0
CT_BONE_FRACTION = 0.03
#: regions that never reach the neck (nor the head above it); muscles the tree files elsewhere
NOT_IN_NECK = frozenset({"abdomen", "pelvis", "lower limb"})
NECK_FREE_MUSCLES = frozenset({"iliopsoas", "iliopsoas muscle", "psoas major muscle"})


@dataclass
class SliceShape:
    """The largest body outline of one slice, on the coarse grid."""

    area_cm2: float
    lr_mm: float
    ap_mm: float
    single: bool  # the outline holds >= 90 % of the slice's body
    edge: float  # fraction of the outline's boundary on the field of view's edge (0: whole)
    bone: float | None = None  # CT: fraction of the trunk outline above CT_BONE_HU


def edge_fraction(outline: np.ndarray) -> float:
    """Fraction of the boundary pixels of a 2D ``outline`` that lie on the array's border."""
    boundary = outline & ~ndimage.binary_erosion(outline)
    n = int(boundary.sum())
    if n == 0:
        return 0.0
    border = np.zeros_like(outline)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    return float((outline & border).sum()) / n


def is_head_core(shape: SliceShape | None) -> bool:
    """A head-sized, head-shaped outline (module docstring)."""
    if shape is None or shape.edge > EDGE_MAX or not shape.single:
        return False
    if not HEAD_AREA_CM2[0] <= shape.area_cm2 <= HEAD_AREA_CM2[1]:
        return False
    if shape.lr_mm > HEAD_MAX_LR_OVER_AP * shape.ap_mm:
        return False
    return shape.bone is None or shape.bone >= CT_BONE_FRACTION


def head_and_neck(shapes: list[SliceShape | None], outlines: list[np.ndarray | None],
                  bodies: list[np.ndarray | None], blocked: np.ndarray, slice_mm: float,
                  pixel_mm: float, s_sign: int) -> np.ndarray:
    """Kinds per slice: "head", "neck" or "". ``outlines[k]``: slice k's largest outline (filled),
    ``bodies[k]``: all of its outlines; ``blocked``: slices that show something else (the
    lungs); ``s_sign``: +1 when a higher slice index is more superior."""
    n = len(shapes)
    kinds = np.full(n, "", dtype=object)
    core = np.array([is_head_core(s) for s in shapes], bool) & ~blocked
    kinds[core] = "head"
    clear = np.array([core[k] and shapes[k].lr_mm <= CORE_LR_OVER_AP * shapes[k].ap_mm  # type: ignore[union-attr]
                      for k in range(n)], bool)
    if clear.sum() * slice_mm < CORE_MIN_MM:
        return kinds
    footprint = np.logical_or.reduce([outlines[k] for k in np.flatnonzero(core)])
    r = max(1, int(round(FOOTPRINT_MM / pixel_mm)))
    footprint = ndimage.binary_dilation(footprint, iterations=r)
    largest = max(shapes[k].area_cm2 for k in np.flatnonzero(core))  # type: ignore[union-attr]
    pixel_cm2 = pixel_mm * pixel_mm / 100.0

    def belongs(k: int) -> bool:
        s, body = shapes[k], bodies[k]
        if s is None or body is None or blocked[k] or s.edge > EDGE_MAX:
            return False
        total = int(body.sum())
        return total * pixel_cm2 <= HEAD_AREA_CM2[1] and (body & footprint).sum() >= INSIDE_FRACTION * total

    for step in (1, -1):  # walking up (+1) and down (-1) the body from the core
        attached = False
        for k in (range(n) if step * s_sign > 0 else range(n - 1, -1, -1)):
            if core[k]:
                attached = True
            elif attached and belongs(k):
                kinds[k] = "head"
            else:
                attached = False
    # below the head's largest cross-section, a slice of less than BASE_FRACTION of it is the neck
    cores = np.flatnonzero(core)
    top = int(cores[np.argmax([shapes[k].area_cm2 for k in cores])])  # type: ignore[union-attr]
    neck = False
    for k in (range(top, -1, -1) if s_sign > 0 else range(top, n)):
        if kinds[k] != "head":
            break
        neck = neck or shapes[k].area_cm2 < BASE_FRACTION * largest  # type: ignore[union-attr]
        if neck:
            kinds[k] = "neck"
    return kinds


def head_neck_reason(region: str, key: str, fractions: dict[str, float], min_fraction: float) -> str:
    """Why a component in head or neck slices cannot be the structure ("" when it can)."""
    if region not in NOT_IN_NECK and key not in NECK_FREE_MUSCLES:
        return ""
    if fractions.get("neck", 0.0) == 0.0 or fractions.get("head", 0.0) + fractions["neck"] < min_fraction:
        return ""
    what = "muscle of the trunk" if key in NECK_FREE_MUSCLES else f"{region} structure"
    return f"in slices that show a head or the neck below it, where no {what} is"
