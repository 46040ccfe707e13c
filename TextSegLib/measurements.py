"""Per-structure measurements: one module for the CLI, ``info``, the Slicer panel and cohorts.

>>> m = measure(mask, image)          # image: the scan Volume (or None: geometry from ``ijk_to_ras``)
>>> m.volume_ml, m.voxels, m.mean, m.centroid_ras
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import GeometryError

PERCENTILES = (5, 25, 50, 75, 95)


def verdict(state: str | None, found) -> str:
    """The three-state verdict: ``state`` where one was recorded, else "found" / "not found" from
    ``found`` (results, rows and segments written before the uncertain state existed)."""
    return state or ("found" if found else "not found")


@dataclass(frozen=True)
class Measurement:
    """What one mask measures on its scan. Intensity and probability fields are ``None`` when no
    image / probability map was given or the mask is empty; ``found`` is the engine's verdict."""

    name: str
    found: bool
    voxels: int
    volume_ml: float
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    percentiles: dict[int, float] = field(default_factory=dict)
    centroid_ras: tuple[float, float, float] | None = None
    bbox_ras: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    mean_probability: float | None = None
    reason: str = ""
    state: str = ""  # "found", "uncertain" or "not found" ("": from ``found``)
    presence_probability: float | None = None

    @property
    def presence_state(self) -> str:
        """The three-state verdict: ``state``, else "found" / "not found" from ``found``."""
        return verdict(self.state, self.found)

    def row(self) -> dict:
        """A flat dict (one table row): ``p5``, ``centroid_r``, ``bbox_r_min``, ..., then ``state`` and
        ``presence_probability`` (the columns of older tables come first, unchanged)."""
        d = asdict(self)
        state, presence = self.presence_state, d.pop("presence_probability")
        d.pop("state")
        pct = d.pop("percentiles") or {}
        cen = d.pop("centroid_ras")
        box = d.pop("bbox_ras")
        for p in PERCENTILES:
            d[f"p{p}"] = pct.get(p)
        for i, axis in enumerate("ras"):
            d[f"centroid_{axis}"] = None if cen is None else cen[i]
        for i, axis in enumerate("ras"):
            d[f"bbox_{axis}_min"] = None if box is None else box[0][i]
            d[f"bbox_{axis}_max"] = None if box is None else box[1][i]
        d["state"], d["presence_probability"] = state, presence
        return d


def voxel_volume_ml(ijk_to_ras: np.ndarray) -> float:
    """Millilitres per voxel of a grid (|det| of the 3x3 part, mm^3 / 1000)."""
    return abs(float(np.linalg.det(np.asarray(ijk_to_ras, float)[:3, :3]))) / 1000.0


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def measure(mask: np.ndarray, image=None, *, name: str = "", ijk_to_ras: np.ndarray | None = None,
            probability: np.ndarray | None = None, found: bool | None = None, reason: str = "",
            percentiles: Sequence[int] = PERCENTILES, state: str = "",
            presence: float | None = None) -> Measurement:
    """Measure one boolean mask. ``image``: the scan (a :class:`~TextSegLib.volume.Volume` on the
    mask's grid) for intensities and geometry; else give ``ijk_to_ras``. ``found`` defaults to
    "the mask has a voxel"; ``state`` / ``presence`` are the engine's three-state verdict and
    presence probability (:meth:`EngineResult.state`, ``EngineResult.presence``)."""
    presence = None if presence is None else _f(presence)
    mask = np.asarray(mask, bool)
    if image is not None:
        if tuple(image.shape) != mask.shape:
            raise GeometryError(f"Segment {name!r}: mask shape {mask.shape} differs from the image's {image.shape}.",
                                "Measure a segmentation on the scan it was made from.")
        ijk_to_ras = image.ijk_to_ras
    if ijk_to_ras is None:
        raise GeometryError(f"Segment {name!r}: no geometry to measure in.", "Pass the image or its ijk_to_ras.")
    a = np.asarray(ijk_to_ras, float)
    idx = np.nonzero(mask)
    n = int(idx[0].size)
    is_found = bool(n) if found is None else bool(found)
    if n == 0:
        return Measurement(name, False, 0, 0.0, reason=reason, state="not found" if state else "",
                           presence_probability=presence)
    vol = n * voxel_volume_ml(a)
    ijk = np.stack(idx, 1).astype(float)
    cen = a[:3, :3] @ ijk.mean(0) + a[:3, 3]
    lo, hi = ijk.min(0), ijk.max(0)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ras = corners @ a[:3, :3].T + a[:3, 3]
    box = (tuple(float(v) for v in ras.min(0)), tuple(float(v) for v in ras.max(0)))
    stats: dict = {}
    if image is not None:
        vals = np.asarray(image.array)[idx].astype(np.float64)
        pv = np.percentile(vals, list(percentiles))
        stats = dict(mean=_f(vals.mean()), std=_f(vals.std()), min=_f(vals.min()), max=_f(vals.max()),
                     percentiles={int(p): float(v) for p, v in zip(percentiles, pv)})
    mp = None
    if probability is not None:
        prob = np.asarray(probability)
        if prob.shape != mask.shape:
            raise GeometryError(f"Segment {name!r}: probability map shape {prob.shape} differs from the mask's.")
        mp = _f(prob[idx].astype(np.float64).mean())
    return Measurement(name, is_found, n, float(vol), centroid_ras=tuple(float(v) for v in cen), bbox_ras=box,
                       mean_probability=mp, reason=reason, state=state, presence_probability=presence, **stats)


def measure_result(result, volume, prompts: Sequence) -> list[Measurement]:
    """One :class:`Measurement` per resolved prompt of an :class:`~TextSegLib.engine.base.EngineResult`
    on ``volume``: its mask, probability map, verdict, reason, three-state verdict and presence."""
    return [measure(result.masks[p.text], volume, name=p.name, probability=result.probabilities.get(p.text),
                    found=result.is_found(p.text), reason=result.reasons.get(p.text, ""),
                    state=result.state(p.text), presence=result.presence.get(p.text)) for p in prompts]


def measure_segmentation(seg, image=None, *, probabilities: Mapping[str, np.ndarray] | None = None,
                         found: Mapping[str, bool] | None = None,
                         reasons: Mapping[str, str] | None = None) -> list[Measurement]:
    """One :class:`Measurement` per segment of a :class:`~TextSegLib.segmentation.Segmentation`
    (keys of ``probabilities`` / ``found`` / ``reasons`` are segment names)."""
    probabilities, found, reasons = probabilities or {}, found or {}, reasons or {}
    out = []
    for s in seg:
        prob = probabilities.get(s.name, s.probability)
        out.append(measure(s.mask, image, name=s.name, ijk_to_ras=seg.ijk_to_ras, probability=prob,
                           found=found.get(s.name), reason=reasons.get(s.name, "")))
    return out


def uncertain_mark(probability: float | None) -> str:
    """The table's mark for an uncertain structure: ``? uncertain (presence 0.55): review``."""
    p = "" if probability is None else f" (presence {probability:.2f})"
    return f"? uncertain{p}: review"


def format_table(rows: Sequence[Measurement], intensity_unit: str = "") -> list[str]:
    """Aligned text lines for a terminal: name, volume, voxels, mean ± std [min, max]."""
    if not rows:
        return []
    w = max([len("structure")] + [len(r.name) for r in rows])
    unit = f" {intensity_unit}" if intensity_unit else ""
    lines = [f"  {'structure':<{w}}  {'volume':>10}  {'voxels':>10}  intensity mean ± std [min, max]"]
    for r in rows:
        if not r.found:
            reason = r.reason[len(r.name) + 2:] if r.reason.startswith(f"{r.name}: ") else r.reason
            state = "not found"
            if reason.startswith("skipped: "):  # set aside by --skip-unknown, never sent to the model
                state, reason = "skipped", reason[len("skipped: "):]
            why = f" ({reason})" if reason else ""
            lines.append(f"  {r.name:<{w}}  {state:>10}{why}")
            continue
        inten = "" if r.mean is None else f"{r.mean:.1f} ± {r.std:.1f} [{r.min:.0f}, {r.max:.0f}]{unit}"
        line = f"  {r.name:<{w}}  {r.volume_ml:>7.1f} mL  {r.voxels:>10,}  {inten}"
        if r.presence_state == "uncertain":
            line = line.rstrip() + "  " + uncertain_mark(r.presence_probability)
        lines.append(line)
    return lines
