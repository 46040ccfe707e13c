"""Prompt box text -> :class:`ResolvedPrompt` values, through TextSegLib's one prompt path.

The module does not resolve prompts itself: it splits the box exactly as the CLI does
(:func:`TextSegLib.knowledge.split_prompts`: "kidney, left" stays one prompt) and resolves with
:func:`TextSegLib.knowledge.resolved.resolve_prompts` and the engine's own vocabulary, free-text
ability and modalities (:func:`engine_resolution_args`). Segments then take their names, codes
and terminology from the :class:`ResolvedPrompt` and their colours from
:func:`TextSegLib.engine.results.segment_colors`.
"""
from __future__ import annotations

from typing import Any, Sequence

from TextSegLib.engine.results import segment_colors
from TextSegLib.knowledge.prompts import split_prompts
from TextSegLib.knowledge.resolved import (
    AmbiguousPromptError,
    ResolvedPrompt,
    UnknownTermError,
    engine_resolution_args,
    resolve_prompts,
)

__all__ = ["AmbiguousPromptError", "ResolvedPrompt", "UnknownTermError", "parse_prompts", "resolve_for",
           "segment_colors", "colors_for"]


def parse_prompts(text: str) -> list[str]:
    """The prompts of a prompt box, split like the CLI (``split_prompts``), repeats dropped."""
    out: list[str] = []
    for p in split_prompts(text or ""):
        p = " ".join(p.split())
        if p and p.lower() not in (q.lower() for q in out):
            out.append(p)
    return out


def resolve_for(engine: Any, prompts: Sequence[str] | str, modality: str) -> list[ResolvedPrompt]:
    """Resolve once for ``engine`` (a loaded engine, a ``RemoteEngine`` or a model description).

    Raises ``ModalityError`` (a model not trained on the modality), ``AmbiguousPromptError``
    (the panel then shows the completer) or ``UnknownTermError`` with one-line messages."""
    return resolve_prompts(prompts, modality=modality, **engine_resolution_args(engine, modality))


def colors_for(prompts: Sequence[ResolvedPrompt]) -> list[tuple[float, float, float]]:
    """The one colour policy for these prompts' segments (paired structures told apart)."""
    return segment_colors([p.name for p in prompts], [p.color for p in prompts])
