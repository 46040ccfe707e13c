"""Prompt text -> what a segment should be called, coded and coloured.

The knowledge tree (``TextSegLib.knowledge.resolve``) is the source of truth.
Where that package is not installed, Slicer's own terminology (the
``3dSlicerLabel`` attribute of its General Anatomy list) is used, so names,
codes and colours still come from a real coded vocabulary.
"""
from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from TextSegLib.errors import TerminologyError

SLICER_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass
class SegmentSpec:
    """How one prompt becomes one segment."""

    prompt: str
    name: str
    terminology: str = ""  # Slicer serialized terminology entry ("" when unknown)
    color: tuple[float, float, float] | None = None  # 0..1 RGB; None = not recommended
    in_vocabulary: bool = True
    nearest: list[str] = field(default_factory=list)
    code: str = ""
    region: str = ""


def parse_prompts(text: str) -> list[str]:
    """Split a prompt box's text on commas, semicolons and newlines; drop blanks and repeats."""
    seen: list[str] = []
    for part in re.split(r"[,\n;]+", text or ""):
        p = " ".join(part.split())
        if p and p.lower() not in (s.lower() for s in seen):
            seen.append(p)
    return seen


def _coded(c: Any) -> str:
    """'scheme^value^meaning' from a (scheme, value, meaning) triple, dict or None."""
    if not c:
        return "^^"
    if isinstance(c, dict):
        c = (c.get("CodingSchemeDesignator") or c.get("scheme", ""), c.get("CodeValue") or c.get("value", ""), c.get("CodeMeaning") or c.get("meaning", ""))
    return "^".join(str(x) for x in tuple(c)[:3])


def serialize_terminology(t: Any) -> str:
    """A Slicer terminology-entry string from a string (kept) or a slicerio-style dict."""
    if not t:
        return ""
    if isinstance(t, str):
        return t
    if not isinstance(t, dict):
        raise TerminologyError(f"Terminology entry of type {type(t).__name__} cannot be stored in a segment.")
    parts = [
        t.get("contextName", SLICER_ANATOMY),
        _coded(t.get("category")),
        _coded(t.get("type")),
        _coded(t.get("typeModifier")),
        t.get("anatomicContextName", ANATOMIC_CONTEXT) if t.get("anatomicRegion") else "",
        _coded(t.get("anatomicRegion")),
        _coded(t.get("anatomicRegionModifier")),
    ]
    return "~".join(parts)


def fallback_color(name: str) -> tuple[float, float, float]:
    """A stable, saturated colour for a term with no recommended colour."""
    h = int(hashlib.md5(name.lower().encode()).hexdigest()[:6], 16) / 0xFFFFFF
    return colorsys.hsv_to_rgb(h, 0.65, 0.9)


def _norm_color(c: Any) -> tuple[float, float, float] | None:
    if c is None:
        return None
    c = tuple(float(x) for x in tuple(c)[:3])
    return tuple(x / 255.0 for x in c) if max(c) > 1.0 else c  # type: ignore[return-value]


def from_knowledge(prompt: str, modality: str, resolve: Callable[[str, str], Any]) -> SegmentSpec:
    """Build a spec from a ``TextSegLib.knowledge`` Resolution (concept, terminology, color, ...)."""
    r = resolve(prompt, modality)
    concept = r.concept
    return SegmentSpec(
        prompt=prompt,
        name=concept.name if concept is not None else prompt,
        terminology=serialize_terminology(r.terminology or ""),
        color=_norm_color(r.color),
        in_vocabulary=bool(r.in_vocabulary),
        nearest=[c.name for c in (r.nearest or [])][:5],
        code=concept.code if concept is not None else "",
        region=concept.region if concept is not None else "",
    )


def from_slicer_terminology(prompt: str, terminologies_logic: Any, vocabulary: Sequence[str] = ()) -> SegmentSpec:
    """Build a spec from Slicer's General Anatomy terminology (label lookup)."""
    import slicer

    vocab = {v.lower() for v in vocabulary}
    in_vocab = not vocab or prompt.lower() in vocab
    entry = slicer.vtkSlicerTerminologyEntry()
    found = terminologies_logic is not None and terminologies_logic.FindTypeInTerminologyBy3dSlicerLabel(
        SLICER_ANATOMY, prompt.lower(), entry
    )
    if not found:
        return SegmentSpec(prompt, prompt, "", None, in_vocab, nearest_terms(prompt, vocabulary))
    mod = entry.GetTypeModifierObject()
    typ = entry.GetTypeObject()
    coded = mod if mod is not None and mod.GetCodeValue() else typ
    rgb = coded.GetRecommendedDisplayRGBValue()
    color = None if tuple(rgb) == (127, 127, 127) else _norm_color(rgb)
    code = f"{typ.GetCodingSchemeDesignator()}:{typ.GetCodeValue()}"
    return SegmentSpec(
        prompt=prompt,
        name=prompt.lower(),
        terminology=terminologies_logic.SerializeTerminologyEntry(entry),
        color=color,
        in_vocabulary=in_vocab,
        nearest=[] if in_vocab else nearest_terms(prompt, vocabulary),
        code=code,
    )


def nearest_terms(prompt: str, vocabulary: Sequence[str], n: int = 3) -> list[str]:
    """Closest vocabulary terms by spelling (for the 'did you mean' hint)."""
    import difflib

    return difflib.get_close_matches(prompt.lower(), [v.lower() for v in vocabulary], n=n, cutoff=0.5)


def knowledge_resolver(vocabulary: Sequence[str] = ()) -> Callable[[str, str], Any] | None:
    """``TextSegLib.knowledge.resolve`` bound to a model vocabulary, or None when not installed."""
    try:
        from TextSegLib.knowledge import resolve
    except ImportError:
        return None
    vocab = list(vocabulary) or None

    def bound(text: str, modality: str) -> Any:
        return resolve(text, modality, vocabulary=vocab)

    return bound


def resolve_prompts(
    prompts: Sequence[str],
    modality: str,
    terminologies_logic: Any = None,
    vocabulary: Sequence[str] = (),
    resolve: Callable[[str, str], Any] | None = None,
) -> list[SegmentSpec]:
    """One :class:`SegmentSpec` per prompt; colours filled in for unknown terms."""
    resolve = resolve or knowledge_resolver(vocabulary)
    specs = []
    for p in prompts:
        spec = from_knowledge(p, modality, resolve) if resolve else from_slicer_terminology(p, terminologies_logic, vocabulary)
        if not spec.in_vocabulary and not spec.nearest and vocabulary:
            spec.nearest = nearest_terms(p, vocabulary)
        if spec.color is None:
            spec.color = fallback_color(spec.name)
        specs.append(spec)
    return specs
