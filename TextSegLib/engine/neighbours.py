"""Presence rules that read *other* structures the model outlines in the same run.

:mod:`.presence` judges each component of a prompt's mask on its own and against the scan
(side, body region, size). The rules here compare it with neighbours instead; the engine asks
the neighbours a prompt needs (:func:`neighbour_names`) in the same pass, as its own terms, and
keeps only their probabilities for these checks:

* **rivals** (:data:`RIVALS`): structures the model confuses one with. A component where a
  rival is more likely on at least ``rules.rival_fraction`` of its voxels is that rival.
* **liver level** (:data:`LEVEL_ANCHOR`): a pelvic or lower-limb component lying mostly in
  slices where the found liver's cross-section is at least ``rules.anchor_cm2``.
* **above the kidneys** (:data:`BELOW_UPPER_ABDOMEN`): small intestine and duodenum lie at or
  below the kidneys; a component lying mostly in slices where the found liver and spleen are
  both large and no kidney is found is in the upper abdomen above them.
* **ribs** (:data:`RIB_LEVEL`): ribs articulate with thoracic vertebrae only, so a "lumbar
  spine" component with the model's rib beside it in most of its slices is thoracic.

Anchors (liver, spleen, kidneys) are first decided by :func:`.presence.decide` themselves, so a
false liver island low in the pelvis does not move the liver's level.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

from ..volume import Volume

#: Neighbours the model confuses a structure with (keys: side-less structure names). Not
#: rivals, measured with benchmarks/bench_not_found.py: vertebral levels (textseg-mini rates
#: "lumbar spine" above "thoracic spine" on real thoracic vertebrae too) and femur / rib (it
#: rates "rib" above "femur" on parts of a real femur).
RIVALS: dict[str, tuple[str, ...]] = {
    "small intestine": ("colon", "duodenum", "stomach"),
    "duodenum": ("small intestine", "stomach", "colon", "pancreas"),
    "colon": ("small intestine", "stomach", "duodenum"),
    "urinary bladder": ("gallbladder", "colon", "small intestine"),
    "bladder": ("gallbladder", "colon", "small intestine"),
}
#: Level anchor of pelvic and lower-limb structures; it speaks where the scan shows no cue of
#: its own (a crop inside the abdomen).
LEVEL_ANCHOR = "liver"
#: Regions the liver level applies to.
BELOW_LIVER_REGIONS = frozenset({"pelvis", "lower limb"})
#: Structures that lie at or below the kidneys, never in the upper abdomen above them.
BELOW_UPPER_ABDOMEN = frozenset({"small intestine", "duodenum"})
UPPER_ABDOMEN_ANCHORS = ("liver", "spleen", "left kidney", "right kidney")
#: ``{structure: the neighbour whose presence beside it in a slice rules it out}``
RIB_LEVEL = {"lumbar spine": "rib"}
#: How an anchor is decided (name, key, side, region) before its cross-sections are used.
ANCHOR_FACTS = {
    "liver": ("Liver", "liver", "", "abdomen"), "spleen": ("Spleen", "spleen", "", "abdomen"),
    "left kidney": ("Left kidney", "kidney", "left", "abdomen"),
    "right kidney": ("Right kidney", "kidney", "right", "abdomen"),
}


def neighbour_name(facts) -> str:
    """The name a structure is known by among neighbours: its side-less name, with its side."""
    return f"{facts.side} {facts.key}".strip()


def neighbour_names(facts) -> tuple[str, ...]:
    """Every neighbour the rules need for a structure (to be asked in the same run)."""
    out = list(RIVALS.get(facts.key, ()))
    if facts.region in BELOW_LIVER_REGIONS:
        out.append(LEVEL_ANCHOR)
    if facts.key in BELOW_UPPER_ABDOMEN:
        out += UPPER_ABDOMEN_ANCHORS
    if facts.key in RIB_LEVEL:
        out.append(RIB_LEVEL[facts.key])
    from .lesions import lesion_neighbours  # a lesion's host and look-alikes (engine/lesions.py)

    out += lesion_neighbours(facts)
    return tuple(dict.fromkeys(out))


class Neighbours:
    """The neighbour rules for one result: probability maps by :func:`neighbour_name`.

    ``decide(mask, prob, facts)`` is the presence decision used for the anchors (returns the kept
    mask and whether the anchor is found); ``s_axis`` is the scan's superior-inferior array axis.
    ``cropped``: the model saw a region of interest only, where an anchor outside it is not seen,
    so the level rules (liver level, above the kidneys) do not speak; rivals and ribs still do."""

    def __init__(self, probs: Mapping[str, np.ndarray], volume: Volume, s_axis: int, rules,
                 decide: Callable[..., tuple[np.ndarray, bool]], cropped: bool = False) -> None:
        self.probs, self.volume, self.s_axis, self.rules, self._decide = dict(probs), volume, s_axis, rules, decide
        self.cropped = cropped
        self._areas: dict[str, np.ndarray | None] = {}
        other = [a for a in range(3) if a != s_axis]
        self._cm2 = float(np.prod([volume.spacing[a] for a in other])) / 100.0

    def area(self, name: str) -> np.ndarray | None:
        """cm² per slice of the anchor ``name`` as decided; zeros when not found, None when not asked."""
        if name not in self._areas:
            prob = self.probs.get(name)
            if prob is None:
                self._areas[name] = None
            else:
                from .presence import StructureFacts

                kept, found = self._decide(prob >= 0.5, prob, StructureFacts(*ANCHOR_FACTS[name]))
                axes = tuple(a for a in range(3) if a != self.s_axis)
                self._areas[name] = (kept.sum(axis=axes) * self._cm2 if found
                                     else np.zeros(prob.shape[self.s_axis]))
        return self._areas[name]

    def why(self, part: np.ndarray, facts, prob: np.ndarray | None) -> str:
        """Why the component ``part`` (voxel indices) of ``facts``' mask is a neighbour's ("" if not)."""
        return (self._rival(part, facts, prob) or self._liver_level(part, facts)
                or self._above_kidneys(part, facts) or self._beside_ribs(part, facts))

    def _fraction(self, part: np.ndarray, slices: np.ndarray) -> float:
        return float(np.mean(slices[part[:, self.s_axis]]))

    def _rival(self, part, facts, prob) -> str:
        if prob is None:
            return ""
        ix = tuple(part.T)
        own = prob[ix].astype(np.float32)
        for name in RIVALS.get(facts.key, ()):
            rp = self.probs.get(name)
            if rp is not None and float(np.mean(rp[ix].astype(np.float32) > own)) >= self.rules.rival_fraction:
                return f"where the model rates {name} more likely"
        return ""

    def _liver_level(self, part, facts) -> str:
        if facts.region not in BELOW_LIVER_REGIONS or self.cropped:
            return ""
        liver = self.area(LEVEL_ANCHOR)
        if liver is None or self._fraction(part, liver >= self.rules.anchor_cm2) < self.rules.region_fraction:
            return ""
        return f"in slices through the liver, far above the {facts.region}"

    def _above_kidneys(self, part, facts) -> str:
        if facts.key not in BELOW_UPPER_ABDOMEN or self.cropped:
            return ""
        areas = [self.area(n) for n in UPPER_ABDOMEN_ANCHORS]
        if any(a is None for a in areas):
            return ""
        liver, spleen, left, right = areas
        upper = (liver >= self.rules.upper_liver_cm2) & (spleen >= self.rules.upper_spleen_cm2) & (left + right == 0)
        if self._fraction(part, upper) < self.rules.region_fraction:
            return ""
        return "in the upper abdomen above the kidneys (large liver and spleen, no kidney in those slices)"

    def _beside_ribs(self, part, facts) -> str:
        name = RIB_LEVEL.get(facts.key)
        prob = self.probs.get(name) if name else None
        if prob is None:
            return ""
        rib_mm, sp = self.rules.rib_mm, self.volume.spacing
        pad = [int(np.ceil(rib_mm / sp[a])) + 1 for a in range(3)]
        lo = np.maximum(part.min(0) - pad, 0)
        hi = np.minimum(part.max(0) + pad + 1, prob.shape)
        ribs = prob[tuple(slice(a, b) for a, b in zip(lo, hi))] >= 0.5
        if not ribs.any():
            return ""
        sampling = [sp[a] if a != self.s_axis else 1e6 for a in range(3)]  # in-plane distance only
        dist = ndimage.distance_transform_edt(~ribs, sampling=sampling)
        local = part - lo
        s = local[:, self.s_axis]
        near = dist[tuple(local.T)] <= rib_mm
        rib_slices = np.bincount(s[near], minlength=int(s.max()) + 1) > 0
        if float(np.mean(rib_slices[s])) < self.rules.region_fraction:
            return ""
        return "beside ribs in most of its slices, so at rib-bearing (thoracic) vertebrae"
