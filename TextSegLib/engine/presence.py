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
4. **rivals** (:data:`RIVALS`): a component where the model rates a neighbour it confuses the
   structure with more likely (asked in the same run) is that neighbour; a pelvic or
   lower-limb component in slices through the found liver (:data:`LEVEL_ANCHOR`), or a
   "lumbar spine" component with ribs beside it (:data:`RIB_LEVEL`), is dropped;
5. **peak probability** of what is left below ``rules.min_peak``: not found;
6. **volume** below the plausible minimum for the structure (:data:`MIN_ML`; a fifth of it,
   and at least ``rules.min_ml_cut``, when the structure touches the edge of the scan, which
   may cut it): not found.

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

#: Neighbours the model confuses a structure with: a component where the model rates one of
#: these (its own term, asked in the same run) more likely than the structure itself, on most
#: of the component's voxels, is that neighbour, not the structure (a colon loop called "small
#: intestine", the gallbladder called "urinary bladder"). Not rivals, measured with
#: benchmarks/bench_not_found.py: vertebral levels (textseg-mini rates "lumbar spine" above
#: "thoracic spine" on real thoracic vertebrae too) and femur / rib (it rates "rib" above
#: "femur" on parts of a real femur).
RIVALS: dict[str, tuple[str, ...]] = {
    "small intestine": ("colon", "duodenum", "stomach"),
    "duodenum": ("small intestine", "stomach", "colon", "pancreas"),
    "colon": ("small intestine", "stomach", "duodenum"),
    "urinary bladder": ("gallbladder", "colon", "small intestine"),
    "bladder": ("gallbladder", "colon", "small intestine"),
}
#: Level anchor for pelvic and lower-limb structures: slices where the model outlines this much
#: liver (cm², probability >= 0.5) lie in the upper abdomen, far above the pelvis and the
#: thighs; it works where the scan itself shows no cue (a crop inside the abdomen).
LEVEL_ANCHOR = "liver"
#: Ribs articulate with thoracic vertebrae only: a "lumbar spine" component whose slices mostly
#: have a rib (the model's, probability >= 0.5) within ``rules.rib_mm`` of it is thoracic.
RIB_LEVEL = {"lumbar spine": "rib"}

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
    #: a component is a rival's (:data:`RIVALS`) when the rival is more likely on this fraction of it
    rival_fraction: float = 0.5
    #: a slice is at the liver's level (:data:`LEVEL_ANCHOR`) when it holds this much liver (cm²)
    anchor_cm2: float = 25.0
    #: a vertebra is rib-bearing in a slice where the model's rib comes this close (mm)
    rib_mm: float = 12.0
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
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab, []
    out = []
    for i, slc in enumerate(ndimage.find_objects(lab), start=1):
        local = lab[slc] == i
        idx = np.argwhere(local) + np.asarray([s.start for s in slc])
        if prob is None:
            mass, peak = float(local.sum()), 1.0
        else:
            p = prob[slc][local].astype(np.float32)
            mass, peak = float(p.sum()), float(p.max())
        out.append(_Comp(i, len(idx), mass, peak, idx))
    return lab, out


def _touches_edge(mask: np.ndarray) -> bool:
    return any(np.take(mask, 0, axis=a).any() or np.take(mask, -1, axis=a).any() for a in range(3))


def _centre_x(idx: np.ndarray, volume: Volume) -> float:
    return float((volume.ijk_to_ras @ np.r_[idx.mean(0), 1.0])[0])


def decide(mask: np.ndarray, prob: np.ndarray | None, facts: StructureFacts, volume: Volume,
           coverage: Coverage | None, rules: PresenceRules, cropped: bool = False,
           rivals: Mapping[str, np.ndarray] | None = None,
           liver_slices: np.ndarray | None = None,
           ribs: np.ndarray | None = None) -> tuple[np.ndarray, bool, str, list[str]]:
    """``(kept mask, found, reason, notes on dropped parts)`` for one structure; ``cropped``:
    the model saw only a region of interest, so any structure may be cut; ``rivals``: the
    probability maps of the structure's :data:`RIVALS`, by name; ``liver_slices``: per slice
    along ``coverage.s_axis``, whether it is at the liver's level (:data:`LEVEL_ANCHOR`);
    ``ribs``: the model's rib mask, for a structure in :data:`RIB_LEVEL`."""
    ml_per_voxel = float(np.prod(volume.spacing)) / 1000.0
    lab, comps = _components(mask, prob)
    if not comps:
        return mask, False, "no voxel above the model's threshold", []
    dropped: dict[str, list[float]] = {}
    keep: list[_Comp] = []
    for c in comps:
        why = (_implausible(c.idx, facts, volume, coverage, rules) or _rival(c.idx, prob, rivals, rules)
               or _at_liver_level(c.idx, facts, coverage, liver_slices, rules)
               or _beside_ribs(c.idx, ribs, volume, coverage, rules))
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
    cut = cropped or _touches_edge(kept)
    need = max(rules.min_ml_cut, whole * rules.cut_fraction) if cut else whole
    if ml < need:
        how = "even for a part cut by the scan's edge" if cut else "for a whole one"
        return np.zeros_like(mask), False, (f"{facts.name}: {ml:.1f} mL is too small to be one "
                                            f"({need:g} mL at least {how})"), notes
    return kept, True, f"found: {ml:.1f} mL, peak probability {peak:.2f}", notes


def _rival(part: np.ndarray, prob: np.ndarray | None, rivals: Mapping[str, np.ndarray] | None,
           rules: PresenceRules) -> str:
    """The rival that the model rates more likely on most of the component ("" when none)."""
    if prob is None or not rivals:
        return ""
    ix = tuple(part.T)
    own = prob[ix].astype(np.float32)
    for name, rp in rivals.items():
        if float(np.mean(rp[ix].astype(np.float32) > own)) >= rules.rival_fraction:
            return f"where the model rates {name} more likely"
    return ""


def _at_liver_level(part: np.ndarray, facts: StructureFacts, coverage: Coverage | None,
                    liver_slices: np.ndarray | None, rules: PresenceRules) -> str:
    """A pelvic or lower-limb component lying mostly in slices at the liver's level ("" if not)."""
    if facts.region not in NOT_AT_LUNGS or liver_slices is None or coverage is None:
        return ""
    if float(np.mean(liver_slices[part[:, coverage.s_axis]])) >= rules.region_fraction:
        return f"in slices through the liver, far above the {facts.region}"
    return ""


def _beside_ribs(part: np.ndarray, ribs: np.ndarray | None, volume: Volume, coverage: Coverage | None,
                 rules: PresenceRules) -> str:
    """A vertebral component that has a rib beside it in most of its slices ("" if not)."""
    if ribs is None or coverage is None or not ribs.any():
        return ""
    pad = [int(np.ceil(rules.rib_mm / volume.spacing[a])) + 1 for a in range(3)]
    lo = np.maximum(part.min(0) - pad, 0)
    hi = np.minimum(part.max(0) + pad + 1, ribs.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    if not ribs[box].any():
        return ""
    sampling = [volume.spacing[a] if a != coverage.s_axis else 1e6 for a in range(3)]  # in-plane distance
    dist = ndimage.distance_transform_edt(~ribs[box], sampling=sampling)
    local = part - lo
    near = dist[tuple(local.T)] <= rules.rib_mm
    s = local[:, coverage.s_axis]
    rib_slices = np.bincount(s[near], minlength=int(s.max()) + 1) > 0
    if float(np.mean(rib_slices[s])) >= rules.region_fraction:
        return "beside ribs in most of its slices, so at rib-bearing (thoracic) vertebrae"
    return ""


def liver_level(prob: np.ndarray, volume: Volume, coverage: Coverage, rules: PresenceRules) -> np.ndarray | None:
    """Per slice along ``coverage.s_axis``: whether the liver's cross-section there reaches
    ``rules.anchor_cm2``; ``None`` when the liver itself is not found. The liver is decided by
    the same rules first (one body, region, size), so a false liver island low in the pelvis
    does not count."""
    facts = StructureFacts(name="Liver", key="liver", side="", region="abdomen")
    kept, found, _, _ = decide(prob >= 0.5, prob, facts, volume, coverage, rules)
    if not found:
        return None
    s_axis = coverage.s_axis
    cm2 = float(np.prod([volume.spacing[a] for a in range(3) if a != s_axis])) / 100.0
    return kept.sum(axis=tuple(a for a in range(3) if a != s_axis)) * cm2 >= rules.anchor_cm2


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


def rival_names(prompt) -> tuple[str, ...]:
    """What the presence step compares a prompt's structure with: its :data:`RIVALS` and, for a
    pelvic or lower-limb structure, the :data:`LEVEL_ANCHOR` (names to resolve to the engine's
    terms and ask in the same run)."""
    facts = structure_facts(prompt)
    anchor = (LEVEL_ANCHOR,) if facts.region in NOT_AT_LUNGS else ()
    ribs = (RIB_LEVEL[facts.key],) if facts.key in RIB_LEVEL else ()
    return RIVALS.get(facts.key, ()) + anchor + ribs


def apply_presence(result: EngineResult, volume: Volume, rules: PresenceRules | None = None,
                   modality: str | None = None, cropped: bool = False,
                   rival_probs: Mapping[str, np.ndarray] | None = None) -> EngineResult:
    """Decide found / not found for every prompt of ``result`` (in place; also returned).

    ``cropped``: the engine ran on a region of interest only (every structure may be cut).
    ``rival_probs``: probability maps of extra structures the engine asked only for the rival
    check, keyed by the structure's side-less name (:data:`RIVALS`); the result's own prompts
    serve as rivals too."""
    rules = rules or PresenceRules()
    t = time.perf_counter()
    coverage = None
    if any(m.any() for m in result.masks.values()):
        coverage = scan_coverage(volume, modality or result.info.get("modality") or volume.modality)
    report: dict[str, dict] = {}
    facts_of = {key: structure_facts(result.prompts.get(key, key)) for key in result.masks}
    by_name = dict(rival_probs or {})
    for key, f in facts_of.items():  # the run's own prompts, before any is changed
        if key in result.probabilities and not f.side:
            by_name.setdefault(f.key, result.probabilities[key])
    liver: np.ndarray | None = None  # per-slice liver level, computed once when a pelvic structure needs it
    liver_done = False
    for key in list(result.masks):
        if key in result.found and not result.found[key]:
            continue
        facts = facts_of[key]
        rivals = {r: by_name[r] for r in RIVALS.get(facts.key, ()) if r in by_name}
        if facts.region in NOT_AT_LUNGS and not liver_done and LEVEL_ANCHOR in by_name and coverage is not None:
            liver, liver_done = liver_level(by_name[LEVEL_ANCHOR], volume, coverage, rules), True
        rib = RIB_LEVEL.get(facts.key)
        ribs = by_name[rib] >= 0.5 if rib in by_name else None
        kept, found, reason, notes = decide(result.masks[key], result.probabilities.get(key), facts,
                                            volume, coverage, rules, cropped, rivals,
                                            liver if facts.region in NOT_AT_LUNGS else None, ribs)
        if found:
            result.masks[key] = kept
            result.found[key] = True
            result.reasons[key] = reason
        else:
            result.mark_not_found(key, reason)
        report[key] = {"found": found, "reason": reason, "dropped": notes}
    result.info["presence"] = report
    if coverage is not None:
        result.info["coverage"] = coverage.summary()
    result.timings["presence"] = time.perf_counter() - t
    return result
