"""Negative crops: structures prompted where they cannot be (issue 21, item 3).

The training cases show each structure where it is, and (TotalSegmentator label maps) a few
known-absent structures. They never show a kidney asked on a head, or a femur asked at the
lungs, so the model's probabilities there are whatever the crop happens to resemble, and the
presence step has to undo them. A :class:`NegativeSource` is a scan (or a slab of one) with the
concepts that cannot be in it; :func:`negative_sample` makes a crop of it whose targets are all
zero. Sources:

* :func:`head_sources`: head scans (any modality, e.g. MR heads from packages), prompted with
  every concept of that modality's vocabulary whose knowledge-tree region is abdomen, pelvis,
  lower limb or thorax (not the trachea and oesophagus, which run through the neck), and the
  trunk muscles;
* :func:`chest_sources`: the slab of a training CT where its lung labels fill at least
  :data:`LUNG_FRACTION` of the body (the lungs' level), prompted with the pelvic and
  lower-limb concepts the case does not label (the liver dome and spleen reach the lungs' level,
  so abdominal structures are not used there).

Limbs: no labelled or unlabelled limb scan ships in a package the project uses, so there is no
limb source yet. The trainer uses these only with ``TrainConfig.negative_p > 0`` (default 0:
the recipe is unchanged). A scan used here becomes a training scan: keep it out of the
presence benchmark's held-out part.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from ...volume import Volume
from .augment import make_sample
from .cases import Case
from .preprocess import prepare

#: The lungs' level: slices where the lung labels fill this fraction of the body label.
LUNG_FRACTION = 0.15
NOT_IN_HEAD = frozenset({"abdomen", "pelvis", "lower limb", "thorax"})
NOT_AT_LUNGS = frozenset({"pelvis", "lower limb"})
THROUGH_NECK = frozenset({"trachea", "esophagus"})
TRUNK_MUSCLES = frozenset({"erector spinae", "iliopsoas"})


@dataclass
class NegativeSource:
    """A case (on the model grid), the slices ``[lo, hi)`` along axis 2 to crop from, and the
    concepts that cannot be there."""

    case: Case
    concepts: list[str]
    slices: tuple[int, int] = (0, 0)
    _view: Case | None = field(default=None, repr=False)

    def view(self) -> Case:
        """The case cut to :attr:`slices`, with no labels (every target is empty)."""
        if self._view is None:
            lo, hi = self.slices if self.slices[1] > self.slices[0] else (0, self.case.image.shape[2])
            self._view = Case(f"{self.case.name}[neg]", self.case.patient, self.case.modality,
                              self.case.image[:, :, lo:hi], self.case.ijk_to_ras, {}, set(self.concepts),
                              self.case.source)
        return self._view


def _region(concept: str, modality: str) -> str:
    from ...engine.presence import structure_facts
    from ...knowledge.resolved import resolve_prompts

    try:
        (p,) = resolve_prompts([concept], modality=modality)
    except Exception:  # a concept the tree cannot resolve has no known region
        return ""
    return structure_facts(p).region


def _key(concept: str) -> str:
    return " ".join(w for w in concept.lower().split() if w not in ("left", "right"))


def head_sources(volumes: list[Volume], vocabulary: dict[str, list[str]]) -> list[NegativeSource]:
    """One source per head scan: every trunk concept of its modality's vocabulary."""
    out = []
    for i, vol in enumerate(volumes):
        mod = vol.modality or "mri"
        absent = [c for c in vocabulary.get(mod, [])
                  if (_region(c, mod) in NOT_IN_HEAD and _key(c) not in THROUGH_NECK) or _key(c) in TRUNK_MUSCLES]
        if not absent:
            continue
        raw, grid = prepare(vol)
        case = Case(f"head{i}:{vol.name}", f"head{i}", mod, raw.astype(np.float32), grid.ijk_to_ras, {}, set(absent),
                    "negative head")
        out.append(NegativeSource(case, sorted(absent)))
    return out


def chest_sources(cases: list[Case], vocabulary: dict[str, list[str]]) -> list[NegativeSource]:
    """The lungs' slab of every CT case with lung labels: its unlabelled pelvic and limb concepts."""
    out = []
    for c in cases:
        lungs = [c.labels[k] for k in ("left lung", "right lung") if k in c.labels]
        if c.modality != "ct" or not lungs or "body" not in c.labels:
            continue
        lung = np.logical_or.reduce(lungs).sum(axis=(0, 1)).astype(np.float64)
        body = c.labels["body"].sum(axis=(0, 1)).astype(np.float64)
        rows = np.flatnonzero((body > 0) & (lung >= LUNG_FRACTION * np.maximum(body, 1)))
        if len(rows) < 4:
            continue
        absent = [k for k in vocabulary.get("ct", []) if k not in c.labels and _region(k, "ct") in NOT_AT_LUNGS]
        if absent:
            out.append(NegativeSource(c, sorted(absent), (int(rows.min()), int(rows.max()) + 1)))
    return out


def negative_sample(source: NegativeSource, k: int, size: tuple[int, int, int], rng: random.Random,
                    strong: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(image, targets (all zero), valid, concepts)``: a crop of ``source`` asked for ``k`` of
    its absent concepts (with repeats when it has fewer)."""
    chosen = rng.sample(source.concepts, k) if len(source.concepts) >= k else \
        [rng.choice(source.concepts) for _ in range(k)]
    x, t, v = make_sample(source.view(), chosen, size, rng, None, strong)
    return x, t, v, chosen
