"""Engine result -> coded :class:`~TextSegLib.segmentation.Segmentation`, with one colour policy.

Every path (CLI, demo, server clients, cohort runner) turns an :class:`EngineResult` into
segments here, so names, terminology, colours and the found / not-found verdict agree
everywhere. The Slicer logic uses :func:`segment_colors` for the same colours.
"""
from __future__ import annotations

import colorsys
import hashlib
from typing import Sequence

from ..segmentation import PALETTE, Segment, Segmentation
from .base import EngineResult

#: how far apart (0..1 RGB, max channel difference) two segments' colours must be
MIN_COLOR_DISTANCE = 0.12


def _free_color(name: str) -> tuple[float, float, float]:
    """A stable colour for a structure with no recommended colour (free text)."""
    h = int(hashlib.sha1(name.lower().encode()).hexdigest()[:6], 16) / 0xFFFFFF
    return PALETTE[int(h * len(PALETTE)) % len(PALETTE)]


def _shift(color: tuple[float, float, float], step: int) -> tuple[float, float, float]:
    """The same hue, lighter or darker (left and right kidney stay recognisably 'kidney')."""
    h, l, s = colorsys.rgb_to_hls(*color)
    l2 = l + (0.22 if l < 0.55 else -0.22) * step
    l2 = min(0.9, max(0.15, l2))
    return tuple(round(v, 4) for v in colorsys.hls_to_rgb(h, l2, s))  # type: ignore[return-value]


def segment_colors(names: Sequence[str], colors: Sequence[tuple[float, float, float] | None]) -> list[tuple[float, float, float]]:
    """The colour policy: the concept's recommended colour; free text a stable palette colour;
    and no two segments of one segmentation look alike (a repeat, such as the left and right of a
    paired organ sharing Slicer's colour, is made lighter or darker)."""
    out: list[tuple[float, float, float]] = []
    for name, c in zip(names, colors):
        c = tuple(float(v) for v in c) if c is not None else _free_color(name)
        step = 1
        cand = c
        while any(max(abs(a - b) for a, b in zip(cand, o)) < MIN_COLOR_DISTANCE for o in out) and step < 4:
            cand = _shift(c, step if step % 2 else -step)
            step += 1
        out.append(cand)  # type: ignore[arg-type]
    return out


#: appended to the name of a segment whose presence is uncertain ("Liver ?")
UNCERTAIN_MARK = " ?"


def display_name(name: str, state: str) -> str:
    """The segment name for a presence ``state``: an uncertain one gets :data:`UNCERTAIN_MARK`."""
    return name + UNCERTAIN_MARK if state == "uncertain" and not name.endswith(UNCERTAIN_MARK) else name


def plain_name(name: str) -> str:
    """A segment name without the uncertain mark ("Spleen ?" -> "Spleen"): the structure it names."""
    return name[: -len(UNCERTAIN_MARK)] if name.endswith(UNCERTAIN_MARK) else name


def to_segmentation(volume, result: EngineResult, *, include_not_found: bool = False,
                    meta: dict | None = None) -> Segmentation:
    """One segment per prompt, in prompt order: named by the preferred term, coded, coloured.

    Prompts not found get no segment unless ``include_not_found`` (then an empty segment whose
    ``meta['found']`` is False). An uncertain one is named with " ?" ("Liver ?"); every segment's meta
    has ``presence_state`` and ``presence_probability`` (None where not computed). ``meta`` is copied
    into every segment (model, version, ...)."""
    from ..knowledge.resolved import ResolvedPrompt

    keys = list(result.masks)
    prompts = [result.prompts.get(k) or ResolvedPrompt(k, None, k, free_text=True, in_vocabulary=False) for k in keys]
    colors = segment_colors([p.name for p in prompts], [p.color for p in prompts])
    seg = Segmentation(volume)
    for k, p, color in zip(keys, prompts, colors):
        found = result.is_found(k)
        if not found and not include_not_found:
            continue
        state = result.state(k)
        info = {**(meta or {}), "prompt": p.text, "term": p.term, "free_text": p.free_text, "found": found,
                "reason": result.reasons.get(k, ""), "presence_state": state,
                "presence_probability": result.presence.get(k)}
        seg.add(Segment(display_name(p.name, state), result.masks[k], terminology=p.terminology, color=color, concept_id=p.concept_id,
                        probability=result.probabilities.get(k), meta=info), on_conflict="rename")
    return seg
