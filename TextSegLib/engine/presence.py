"""Found or not found: a presence decision per prompt of an :class:`EngineResult`.

:func:`apply_presence` runs after an engine has thresholded its probability maps. Per prompt it
looks at the connected components of the mask and removes the ones that cannot be the
structure asked for, then decides whether what is left is the structure:

1. **laterality** (knowledge tree: the concept's type modifier Left/Right, else its name): a
   component of a left-sided structure whose centre lies on the patient's right of the body
   midline (RAS +x is the patient's right) is dropped, and vice versa;
2. **body region** (knowledge tree: the concept's region, :mod:`.coverage` for the scan): a
   component of an abdominal, thoracic (not the trachea or oesophagus, which run through the
   neck), pelvic or lower-limb structure lying in slices that show a head, of an abdominal, pelvic or lower-limb structure lying above the lungs (CT: at the shoulders),
   or of a pelvic or lower-limb structure lying in slices through the lungs or (CT) far from any
   slice with large bone off the midline (iliac wings, femurs), is dropped; so is a
   trunk organ's component lying outside the trunk's outline (an island in an arm);
3. **one body**: a solid organ is one connected body, so only the component holding the most
   probability mass is kept;
4. **neighbours** (:mod:`.neighbours`, structures asked in the same run): a component the model
   rates a rival more likely on, a pelvic or lower-limb one in slices through the found liver,
   a small-intestine or duodenum one above the kidneys, a "lumbar spine" one with ribs beside
   it, is dropped;
5. **peak probability** of what is left below ``rules.min_peak``: not found;
6. **volume** below the plausible minimum for the structure (:data:`MIN_ML`; a fifth of it,
   and at least ``rules.min_ml_cut``, when the structure touches the edge of the scan, which
   may cut it, or when the scan covers less than half the structure's typical length,
   :data:`EXTENT_MM`): not found.

The verdict and its reason go into ``result.found`` / ``result.reasons``
(:meth:`EngineResult.mark_not_found`); what was dropped is listed in ``result.info["presence"]``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .base import EngineResult
from .coverage import KIND_TEXT, Coverage, scan_coverage
from .headneck import head_neck_reason
from .neighbours import Neighbours, neighbour_name

#: Smallest plausible volume (mL) of a whole structure as a model outlines it, keyed by the
#: concept's name without its side (knowledge tree preferred name or the engine's term).
#: Deliberately low, a fraction of an adult organ (atrophic kidney, contracted gallbladder, a
#: model that under-segments a thin pancreas); structures not listed use
#: ``PresenceRules.default_min_ml``.
MIN_ML: dict[str, float] = {
    "liver": 150.0, "spleen": 15.0, "kidney": 15.0, "lung": 100.0, "heart": 50.0, "brain": 300.0,
    "stomach": 10.0, "pancreas": 4.0, "gallbladder": 3.0, "bladder": 5.0, "urinary bladder": 5.0,
    "adrenal gland": 1.5, "aorta": 5.0, "inferior vena cava": 4.0, "esophagus": 2.0, "trachea": 3.0,
    "duodenum": 4.0, "femur": 15.0, "humerus": 10.0, "hip bone": 15.0, "sacrum": 8.0,
    "scapula": 10.0, "sternum": 5.0, "spinal cord": 2.0, "colon": 5.0, "small intestine": 5.0,
    "gluteus maximus": 20.0, "iliopsoas": 5.0,
}
#: Typical head-to-foot extent (mm) of an adult structure (textbook anatomy, rounded down). A
#: scan that covers much less than this along the body axis (``rules.short_scan_fraction``) can
#: only show a part of it, so the structure is judged by the minimum for a cut part even where
#: its mask misses the scan's edge (a 40 mm slab shows a slice of the stomach, never a whole one).
EXTENT_MM: dict[str, float] = {
    "liver": 140.0, "spleen": 100.0, "kidney": 100.0, "lung": 200.0, "heart": 100.0, "brain": 120.0,
    "stomach": 120.0, "pancreas": 40.0, "gallbladder": 60.0, "bladder": 50.0, "urinary bladder": 50.0,
    "adrenal gland": 30.0, "aorta": 300.0, "inferior vena cava": 200.0, "esophagus": 200.0,
    "trachea": 100.0, "duodenum": 80.0, "femur": 400.0, "humerus": 280.0, "hip bone": 180.0,
    "sacrum": 90.0, "scapula": 130.0, "sternum": 150.0, "spinal cord": 400.0, "colon": 250.0,
    "small intestine": 150.0, "gluteus maximus": 180.0, "iliopsoas": 250.0,
}
#: Solid structures that are one connected body (one component is kept).
ONE_BODY = frozenset({
    "liver", "spleen", "kidney", "lung", "heart", "brain", "stomach", "pancreas", "gallbladder",
    "bladder", "urinary bladder", "aorta", "inferior vena cava", "esophagus", "trachea", "sacrum",
    "body",
})
#: Structures the tree files under another region that lie in the pelvis (for the region rules).
PELVIC = {"sacrum": "pelvis", "coccyx": "pelvis"}
#: Region of model terms the knowledge tree has no concept for (textseg-mini's "hip bone").
REGION_OF_TERM = {"hip bone": "pelvis", "erector spinae": "whole body", "vertebral column": "spine",
                  "body": "whole body"}
#: Trunk muscles filed under "whole body" that never reach a head slice.
TRUNK_MUSCLES = frozenset({"erector spinae", "iliopsoas", "iliopsoas muscle", "psoas major muscle"})
#: Knowledge-tree regions that never reach a head slice / a slice through the lungs.
NOT_IN_HEAD = frozenset({"abdomen", "pelvis", "lower limb", "thorax"})
NOT_AT_LUNGS = frozenset({"pelvis", "lower limb"})
NOT_ABOVE_LUNGS = frozenset({"abdomen", "pelvis", "lower limb"})
#: Thoracic structures that run up through the neck (a neck slice can look like a head).
THROUGH_NECK = frozenset({"trachea", "esophagus", "thymus", "thyroid gland"})
#: Regions of organs inside the trunk's outline (an island in an arm is not one of them).
TRUNK = frozenset({"abdomen", "pelvis", "thorax"})

LEFT_CODES = ("SCT^7771000^",)
RIGHT_CODES = ("SCT^24028007^",)


@dataclass(frozen=True)
class PresenceRules:
    """Thresholds of the presence decision (the bundled model's values are the defaults)."""

    min_peak: float = 0.65
    default_min_ml: float = 1.0
    #: minimum for a structure the scan's edge may cut: this fraction of MIN_ML ...
    cut_fraction: float = 0.2
    #: ... but never below this (mL)
    min_ml_cut: float = 1.0
    #: a component is in a forbidden region / outside the trunk when this fraction of it is
    region_fraction: float = 0.5
    #: a lateral component is on the wrong side when its centre is this far (mm) past the midline
    side_margin_mm: float = 5.0
    #: a component is a rival's (:data:`.neighbours.RIVALS`) when it is more likely on this fraction
    rival_fraction: float = 0.5
    #: a slice is at the liver's level when it holds this much found liver (cm²)
    anchor_cm2: float = 25.0
    #: a vertebra is rib-bearing in a slice where the model's rib comes this close (mm)
    rib_mm: float = 12.0
    #: a scan shorter than this fraction of a structure's typical extent (:data:`EXTENT_MM`) shows
    #: only a part of it, so the minimum for a cut part applies
    short_scan_fraction: float = 0.5
    #: upper abdomen above the kidneys: slices with this much found liver and spleen (cm²)
    upper_liver_cm2: float = 100.0
    upper_spleen_cm2: float = 33.0
    min_ml: dict = field(default_factory=lambda: dict(MIN_ML))


@dataclass(frozen=True)
class StructureFacts:
    """What the knowledge tree says about one prompt's structure."""

    name: str  # display name for reasons
    key: str  # side-less lower-case name used in the tables
    side: str  # "left", "right" or ""
    region: str


def structure_facts(prompt) -> StructureFacts:
    """Facts for a ResolvedPrompt (or plain text: name only, no region)."""
    concept = getattr(prompt, "concept", None)
    text = getattr(prompt, "term", None) or getattr(prompt, "text", None) or str(prompt)
    name = concept.name if concept is not None else text
    side = ""
    if concept is not None:
        parts = concept.terminology.split("~")
        modifier = parts[3] if len(parts) > 3 else ""
        side = "left" if modifier.startswith(LEFT_CODES) else "right" if modifier.startswith(RIGHT_CODES) else ""
    words = name.lower().replace(",", " ").split()
    if not side and words and words[0] in ("left", "right"):
        side = words[0]
    key = " ".join(w for w in words if w not in ("left", "right"))
    term_words = [w for w in str(text).lower().replace(",", " ").split() if w not in ("left", "right")]
    term_key = " ".join(term_words)
    if key not in MIN_ML and key not in ONE_BODY and (term_key in MIN_ML or term_key in ONE_BODY):
        key = term_key
    region = concept.region if concept is not None else REGION_OF_TERM.get(key, "")
    region = PELVIC.get(key, region)
    return StructureFacts(name=name, key=key, side=side, region=region)


@dataclass
class _Comp:
    label: int
    voxels: int
    mass: float
    peak: float
    idx: np.ndarray  # (N, 3) voxel indices


def _components(mask: np.ndarray, prob: np.ndarray | None):
    """Connected components with their voxel indices (in C order), probability mass and peak.

    One pass over the labelled voxels for all components (a noisy mask has thousands)."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab, []
    flat = np.flatnonzero(lab)
    labels = lab.ravel()[flat]
    order = np.argsort(labels, kind="stable")  # by component, C order within each
    counts = np.bincount(labels, minlength=n + 1)[1:]
    idx_all = np.column_stack(np.unravel_index(flat[order], lab.shape))
    parts = np.split(idx_all, np.cumsum(counts)[:-1])
    if prob is None:
        mass, peak = counts.astype(np.float64), np.ones(n)
    else:
        p = np.asarray(prob).ravel()[flat].astype(np.float32)
        mass = np.bincount(labels, weights=p, minlength=n + 1)[1:]
        peak = np.full(n + 1, -np.inf, dtype=np.float32)
        np.maximum.at(peak, labels, p)
        peak = peak[1:]
    return lab, [_Comp(i + 1, int(counts[i]), float(mass[i]), float(peak[i]), parts[i]) for i in range(n)]


def _touches_edge(mask: np.ndarray) -> bool:
    return any(np.take(mask, 0, axis=a).any() or np.take(mask, -1, axis=a).any() for a in range(3))


def _centre_x(idx: np.ndarray, volume: Volume) -> float:
    return float((volume.ijk_to_ras @ np.r_[idx.mean(0), 1.0])[0])


def decide(mask: np.ndarray, prob: np.ndarray | None, facts: StructureFacts, volume: Volume,
           coverage: Coverage | None, rules: PresenceRules, cropped: bool = False,
           neighbours: Neighbours | None = None) -> tuple[np.ndarray, bool, str, list[str]]:
    """``(kept mask, found, reason, notes on dropped parts)`` for one structure; ``cropped``:
    the model saw only a region of interest, so any structure may be cut; ``neighbours``: the
    rules that compare with other structures of the same run (:mod:`.neighbours`)."""
    ml_per_voxel = float(np.prod(volume.spacing)) / 1000.0
    lab, comps = _components(mask, prob)
    if not comps:
        return mask, False, "no voxel above the model's threshold", []
    dropped: dict[str, list[float]] = {}
    keep: list[_Comp] = []
    for c in comps:
        why = _implausible(c.idx, facts, volume, coverage, rules)
        if not why and neighbours is not None:
            why = neighbours.why(c.idx, facts, prob)
        if why:
            dropped.setdefault(why, []).append(c.voxels * ml_per_voxel)
        else:
            keep.append(c)
    notes = [f"{sum(v):.1f} mL in {len(v)} part(s) {why}" if len(v) > 1 else f"{v[0]:.1f} mL {why}"
             for why, v in sorted(dropped.items(), key=lambda kv: -sum(kv[1]))]
    if not keep:
        return np.zeros_like(mask), False, f"{facts.name}: nothing plausible ({'; '.join(notes)})", notes
    if facts.key in ONE_BODY and len(keep) > 1:
        best = max(keep, key=lambda c: c.mass)
        dropped = sum(c.voxels for c in keep if c is not best) * ml_per_voxel
        notes.append(f"{dropped:.1f} mL in {len(keep) - 1} island(s) apart from the main body")
        keep = [best]
    kept = np.isin(lab, [c.label for c in keep]) if len(keep) < len(comps) else mask
    peak = max(c.peak for c in keep)
    ml = sum(c.voxels for c in keep) * ml_per_voxel
    if prob is not None and peak < rules.min_peak:
        return np.zeros_like(mask), False, (f"{facts.name}: the model's peak probability {peak:.2f} is below "
                                            f"{rules.min_peak:.2f} ({ml:.1f} mL above threshold)"), notes
    whole = rules.min_ml.get(facts.key, rules.default_min_ml)
    s_axis = coverage.s_axis if coverage is not None else 2
    thin = volume.shape[s_axis] * volume.spacing[s_axis] < rules.short_scan_fraction * EXTENT_MM.get(facts.key, 0.0)
    cut = cropped or thin or _touches_edge(kept)
    need = max(rules.min_ml_cut, whole * rules.cut_fraction) if cut else whole
    if ml < need:
        how = ("even for the part a scan this short can show" if thin and not cropped else
               "even for a part cut by the scan's edge" if cut else "for a whole one")
        return np.zeros_like(mask), False, (f"{facts.name}: {ml:.1f} mL is too small to be one "
                                            f"({need:g} mL at least {how})"), notes
    return kept, True, f"found: {ml:.1f} mL, peak probability {peak:.2f}", notes


def _implausible(part: np.ndarray, facts: StructureFacts, volume: Volume, coverage: Coverage | None,
                 rules: PresenceRules) -> str:
    """Why one component (voxel indices ``part``) cannot be the structure ("" when it can)."""
    if coverage is None:
        return ""
    if facts.side:
        mid = coverage.midline_for(part)
        if np.isfinite(mid):
            x = _centre_x(part, volume)  # RAS x of the component's centre
            # RAS: +x is the patient's right
            wrong = x > mid + rules.side_margin_mm if facts.side == "left" else x < mid - rules.side_margin_mm
            if wrong:
                other = "right" if facts.side == "left" else "left"
                return f"on the patient's {other} of the body midline"
    frac = coverage.slice_kinds(part)
    if (facts.region in NOT_IN_HEAD and not (facts.region == "thorax" and facts.key in THROUGH_NECK)) \
            or facts.key in TRUNK_MUSCLES:
        if frac.get("head", 0.0) >= rules.region_fraction:
            what = "trunk muscle" if facts.key in TRUNK_MUSCLES else f"{facts.region} structure"
            return f"in slices that show {KIND_TEXT['head']}, where no {what} is"
    # -- head and neck on MR and CT (issue 21): the neck below a head (engine/headneck.py) --
    why = head_neck_reason(facts.region, facts.key, frac, rules.region_fraction)
    if why:
        return why
    # -- end of the head-and-neck hook --
    if facts.region in NOT_ABOVE_LUNGS:
        above = coverage.above_lungs(part)
        if above is not None and above >= rules.region_fraction:
            return f"above the lungs (at the shoulders or neck), where no {facts.region} structure is"
    if facts.region in NOT_AT_LUNGS:
        if frac.get("lungs", 0.0) >= rules.region_fraction:
            return f"in slices through {KIND_TEXT['lungs']}, far above the {facts.region}"
        near = coverage.near_lateral_bone(part)
        if near is not None and near < rules.region_fraction:
            return f"in slices with no hip or thigh bone near them, so above the {facts.region}"
    if facts.region in TRUNK and coverage.inside_body(part) < rules.region_fraction:
        return "outside the trunk's outline (e.g. in an arm)"
    return ""


def apply_presence(result: EngineResult, volume: Volume, rules: PresenceRules | None = None,
                   modality: str | None = None, cropped: bool = False,
                   neighbour_probs: Mapping[str, np.ndarray] | None = None) -> EngineResult:
    """Decide found / not found for every prompt of ``result`` (in place; also returned).

    ``cropped``: the engine ran on a region of interest only (every structure may be cut).
    ``neighbour_probs``: probability maps of neighbours the engine asked only for the neighbour
    rules, keyed by :func:`.neighbours.neighbour_name`; the result's own prompts serve too."""
    rules = rules or PresenceRules()
    t = time.perf_counter()
    coverage = None
    if any(m.any() for m in result.masks.values()):
        coverage = scan_coverage(volume, modality or result.info.get("modality") or volume.modality)
    report: dict[str, dict] = {}
    facts_of = {key: structure_facts(result.prompts.get(key, key)) for key in result.masks}
    by_name = dict(neighbour_probs or {})
    for key, f in facts_of.items():  # the run's own prompts, before any is changed
        if key in result.probabilities:
            by_name.setdefault(neighbour_name(f), result.probabilities[key])
    neighbours = None
    if coverage is not None:
        neighbours = Neighbours(by_name, volume, coverage.s_axis, rules,
                                lambda m, p, f: decide(m, p, f, volume, coverage, rules)[:2], cropped)
    for key in list(result.masks):
        if key in result.found and not result.found[key]:
            continue
        facts = facts_of[key]
        kept, found, reason, notes = decide(result.masks[key], result.probabilities.get(key), facts,
                                            volume, coverage, rules, cropped, neighbours)
        if found:
            result.masks[key] = kept
            result.found[key] = True
            result.reasons[key] = reason
        else:
            result.mark_not_found(key, reason)
        report[key] = {"found": found, "reason": reason, "dropped": notes}
    result.info["presence"] = report
    # -- lesions (issue 21): inside the host organ found in the same pass (engine/lesions.py) --
    from .lesions import apply_lesion_rules, host_facts

    apply_lesion_rules(result, volume, by_name,
                       lambda m, p, name: decide(m, p, host_facts(name), volume, coverage, rules)[:2],
                       {k: neighbour_name(f) for k, f in facts_of.items()}, rules.default_min_ml)
    # -- end of the lesion hook --
    if coverage is not None:
        result.info["coverage"] = coverage.summary()
    result.timings["presence"] = time.perf_counter() - t
    return result
