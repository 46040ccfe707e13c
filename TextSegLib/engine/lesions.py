"""Lesion prompts (tumour, neoplasm, cyst, metastasis, nodule, lesion, stone) need their own evidence.

A model asked for "liver tumour" on a scan without one still outlines something: the
gallbladder beside the liver, or a patch of ordinary liver (issue 21: 44.4 mL on the bundled
abdomen crop, 1,067 of its 1,646 voxels in the run's own gallbladder; 30.8 mL of plain liver
on the demo patient). After the presence step (:mod:`.presence`) every component of a
lesion's mask is judged against its **host** organ, decided in the same pass:

1. **not another structure of the run**: a component lying mostly (:data:`INSIDE_FRACTION`)
   in another found structure of the same run (a prompt, or a look-alike asked in the same
   pass, :data:`LOOK_ALIKES`; not one that contains the host, such as the body), and more in
   it than in the host, is that structure;
2. **inside the host**: at least :data:`INSIDE_FRACTION` of the component lies in the host's
   mask, or (a solid tumour that an air-filled lung mask leaves out) at least
   :data:`CONTACT_FRACTION` of the shell around it (:data:`RING_MM`) is host;
3. **different from the host around it**: a lesion shows as a region brighter or darker than
   the host tissue around it. The contrast, ``|mean(shell) - mean(component)| / std(host)`` on
   the scan's own intensities, must be at least :data:`MIN_CONTRAST` (the host's spread as
   the unit works on CT and MR alike).

The host is the organ of the knowledge tree's concept (its anatomic region, e.g. "Liver
neoplasm" → liver; paired organs both sides unless the prompt names one), else the organ named
in the prompt ("renal stone" → kidneys, "gallstone" → gallbladder). The engine asks the host
and its look-alikes in the same pass (:func:`lesion_neighbours`, through the neighbour
mechanism of :mod:`.neighbours`); a host the run already has is used as decided. A host the
model has no term for cannot be checked: the lesion is kept but marked "uncertain". A host
that is not found means no lesion of it is found either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

#: Words that make a prompt a lesion (lower case, singular and plural).
LESION_WORDS = frozenset({
    "tumour", "tumor", "tumours", "tumors", "neoplasm", "neoplasms", "cancer", "carcinoma", "mass",
    "lesion", "lesions", "cyst", "cysts", "metastasis", "metastases", "nodule", "nodules", "stone",
    "stones", "calculus", "calculi", "gallstone", "gallstones",
})
#: Terminology category of a lesion in the knowledge tree (DICOM "Morphologically Altered Structure").
LESION_CATEGORY = "SCT^49755003^"
#: Organ words of a prompt -> the host's side-less name.
HOST_WORDS = {
    "liver": "liver", "hepatic": "liver", "kidney": "kidney", "renal": "kidney", "lung": "lung",
    "pulmonary": "lung", "gallbladder": "gallbladder", "gallstone": "gallbladder",
    "gallstones": "gallbladder", "biliary": "gallbladder", "bladder": "bladder", "vesical": "bladder",
    "pancreas": "pancreas", "pancreatic": "pancreas", "spleen": "spleen", "splenic": "spleen",
    "adrenal": "adrenal gland", "brain": "brain", "cerebral": "brain", "stomach": "stomach",
    "gastric": "stomach", "prostate": "prostate", "thyroid": "thyroid gland",
}
#: Hosts with a left and a right organ.
PAIRED = frozenset({"kidney", "lung", "adrenal gland"})
#: Structures beside a host that the model mistakes a lesion for; asked in the same pass.
LOOK_ALIKES: dict[str, tuple[str, ...]] = {"liver": ("gallbladder",)}

INSIDE_FRACTION = 0.5
CONTACT_FRACTION = 0.2
RING_MM = 6.0
#: measured on the tuning scans (docs/not-found.md): real LiTS 117 tumours 1.2-2.0, plain liver
#: outlined as "tumour" on the demo patient and the TotalSegmentator abdomen 0.1-0.6
MIN_CONTRAST = 0.8


@dataclass(frozen=True)
class LesionFacts:
    """A lesion prompt's host: its side-less name and the names to ask (sides of a pair)."""

    host: str
    host_names: tuple[str, ...]


def lesion_facts(prompt, side: str = "") -> LesionFacts | None:
    """The host of a lesion prompt (ResolvedPrompt or text), ``None`` when it is no lesion."""
    concept = getattr(prompt, "concept", None)
    text = str(getattr(prompt, "text", None) or prompt)
    host = ""
    if concept is not None:
        parts = concept.terminology.split("~")
        if len(parts) > 5 and parts[1].startswith(LESION_CATEGORY):
            meaning = parts[5].split("^")[-1].strip().lower()
            host = HOST_WORDS.get(meaning, meaning)
    words = [w for name in (getattr(concept, "name", ""), text)
             for w in str(name).lower().replace(",", " ").replace("-", " ").split()]
    if not host:
        if not LESION_WORDS.intersection(words):
            return None
        host = next((HOST_WORDS[w] for w in words if w in HOST_WORDS), "")
    if not side:
        side = "left" if "left" in words else "right" if "right" in words else ""
    if host in PAIRED:
        names = (f"{side} {host}",) if side else (f"left {host}", f"right {host}")
    else:
        names = (host,) if host else ()
    return LesionFacts(host, names)


def lesion_neighbours(facts) -> tuple[str, ...]:
    """Structures to ask in the same pass for a lesion (:class:`.presence.StructureFacts`): its
    host and the host's look-alikes; () for any other structure."""
    f = lesion_facts(facts.name, facts.side)
    if f is None:
        return ()
    return f.host_names + LOOK_ALIKES.get(f.host, ())


def host_facts(name: str):
    """Presence facts (:class:`.presence.StructureFacts`) of a host or look-alike asked by name."""
    from ..knowledge.resolved import resolve_prompts
    from .presence import structure_facts

    try:
        (prompt,) = resolve_prompts([name])
    except Exception:  # a name the tree cannot resolve is judged by its name alone
        prompt = name
    return structure_facts(prompt)


def _ring(part: np.ndarray, shape: tuple[int, ...], spacing,
          mm: float) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """``(box, component in box, shell of width mm around it in box)``."""
    pad = [int(np.ceil(mm / s)) + 1 for s in spacing]
    lo = np.maximum(part.min(0) - pad, 0)
    hi = np.minimum(part.max(0) + np.asarray(pad) + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    comp = np.zeros(tuple(hi - lo), bool)
    comp[tuple((part - lo).T)] = True
    dist = ndimage.distance_transform_edt(~comp, sampling=spacing)
    return box, comp, (dist > 0) & (dist <= mm)


def judge(mask: np.ndarray, image: np.ndarray, spacing, host: np.ndarray,
          others: Mapping[str, np.ndarray], host_name: str) -> tuple[np.ndarray, list[str]]:
    """``(kept mask, notes on dropped parts)`` for one lesion mask against its host mask."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask, []
    ml = float(np.prod(spacing)) / 1000.0
    host_vals = image[host & ~mask].astype(np.float64)
    spread = float(host_vals.std()) if host_vals.size > 1 else 0.0
    keep = np.zeros(mask.shape, bool)
    dropped: dict[str, list[float]] = {}
    for i, slc in enumerate(ndimage.find_objects(lab), start=1):
        part = np.argwhere(lab[slc] == i) + np.asarray([s.start for s in slc])
        ix = tuple(part.T)
        box, comp, shell = _ring(part, mask.shape, spacing, RING_MM)
        in_host = float(host[ix].mean())
        contact = float(host[box][shell].mean()) if shell.any() else 0.0
        why = ""
        for name, other in others.items():
            frac = float(other[ix].mean())
            if frac >= INSIDE_FRACTION and frac > in_host:
                why = f"in the {name} of this run"
                break
        if not why and in_host < INSIDE_FRACTION and contact < CONTACT_FRACTION:
            why = f"outside the {host_name}"
        if not why:
            around = image[box][shell & host[box]]
            if around.size and spread > 0:
                contrast = abs(float(around.mean()) - float(image[ix].mean())) / spread
                if contrast < MIN_CONTRAST:
                    why = (f"no different from the {host_name} around it (contrast below {MIN_CONTRAST:g} "
                           f"of the {host_name}'s spread)")
        if why:
            dropped.setdefault(why, []).append(len(part) * ml)
        else:
            keep[ix] = True
    notes = [f"{sum(v):.1f} mL in {len(v)} part(s) {w}" if len(v) > 1 else f"{v[0]:.1f} mL {w}"
             for w, v in sorted(dropped.items(), key=lambda kv: -sum(kv[1]))]
    return keep, notes


def apply_lesion_rules(result, volume, probs: Mapping[str, np.ndarray],
                       decide: Callable[[np.ndarray, np.ndarray, str], tuple[np.ndarray, bool]],
                       name_of: Mapping[str, str], min_ml: float = 1.0) -> None:
    """Judge every found lesion prompt of ``result`` (in place; see the module docstring).

    ``probs``: probability maps by neighbour name (the run's prompts and the structures asked
    for the rules); ``decide(mask, prob, name)`` the presence decision for a host or look-alike
    asked only for the rules; ``name_of``: result key -> neighbour name of each prompt;
    ``min_ml``: what is left of a lesion must be at least this big (the presence step's floor)."""
    lesions = {k: lesion_facts(result.prompts.get(k, k)) for k in result.masks}
    lesions = {k: f for k, f in lesions.items() if f is not None}
    if not lesions:
        return
    key_of = {name: k for k, name in name_of.items() if k not in lesions}
    decided: dict[str, np.ndarray | None] = {}

    def structure(name: str) -> np.ndarray | None:
        """The decided mask of ``name`` (empty when not found), None when nobody asked it."""
        if name not in decided:
            k = key_of.get(name)
            if k is not None:
                decided[name] = result.masks[k] if result.is_found(k) else np.zeros(volume.shape, bool)
            elif name in probs:
                kept, found = decide(probs[name] >= 0.5, probs[name], name)
                decided[name] = kept if found else np.zeros(volume.shape, bool)
            else:
                decided[name] = None
        return decided[name]

    image = np.asarray(volume.array)
    spacing = tuple(float(s) for s in volume.spacing)
    report = result.info.setdefault("presence", {})
    for key, f in lesions.items():
        if not result.is_found(key):
            continue
        hosts = [structure(n) for n in f.host_names]
        label = str(getattr(result.prompts.get(key), "name", key))
        entry = report.setdefault(key, {"found": True, "reason": result.reasons.get(key, ""), "dropped": []})
        entry["lesion_host"] = f.host or None
        if not f.host_names or all(h is None for h in hosts):
            why = (f"{label}: kept, but its host organ ({f.host or 'not named'}) could not be checked "
                   "(the model has no term for it)")
            result.mark_uncertain(key, why)
            entry.update(reason=why)
            continue
        host = np.logical_or.reduce([h for h in hosts if h is not None])
        if not host.any():
            why = f"{label}: no {f.host} is found in this scan, so no lesion of it"
            result.mark_not_found(key, why)
            entry.update(found=False, reason=why)
            continue
        others = {}
        for name in dict.fromkeys(list(key_of) + list(LOOK_ALIKES.get(f.host, ()))):
            if name in f.host_names:
                continue
            m = structure(name)
            if m is not None and m.any() and (m & host).sum() < INSIDE_FRACTION * host.sum():
                others[name] = m  # not a container of the host (the body)
        kept, notes = judge(result.masks[key], image, spacing, host, others, f.host)
        entry["dropped"] = list(entry.get("dropped", [])) + notes
        left = kept.sum() * float(np.prod(spacing)) / 1000.0
        if left < min_ml:
            small = f"{left:.1f} mL left, too small to be one ({min_ml:g} mL at least); " if kept.any() else ""
            why = f"{label}: no lesion ({small}{'; '.join(notes)})"
            result.mark_not_found(key, why)
            entry.update(found=False, reason=why)
        else:
            result.masks[key] = kept
            if notes:
                result.reasons[key] = f"found: {left:.1f} mL inside the {f.host}" + (
                    f" ({'; '.join(notes)} left out)")
                entry.update(reason=result.reasons[key])
