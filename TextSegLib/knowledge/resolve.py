"""Free text -> coded concept, and "not a trained term, did you mean ..." for the GUI."""
from __future__ import annotations

from dataclasses import dataclass, field

from .search import suggest
from .text import normalize
from .tree import Concept, KnowledgeTree, Vocabulary

NEAREST = 5


@dataclass(frozen=True)
class Resolution:
    """What one prompt means: its concept (or ``None``), Slicer terminology entry and colour,
    whether the model knows it, and the nearest terms the model does know."""

    concept: Concept | None
    text: str
    terminology: str | None
    color: tuple[float, float, float] | None
    in_vocabulary: bool
    nearest: list[Concept] = field(default_factory=list)


def resolve(tree: KnowledgeTree, text: str, modality: str = "", vocabulary: Vocabulary | None = None) -> Resolution:
    """Resolve one prompt. Accepts exact names, abbreviations, laterality forms, spelling
    variants and small typos of a whole name; anything looser returns ``concept=None``."""
    raw = text.strip()[:400] if isinstance(text, str) else ""
    vocab = vocabulary if vocabulary is not None else tree.vocabulary(None, modality)
    if not normalize(raw):
        return Resolution(None, raw, None, None, False, [])
    concept = None
    for s in suggest(tree, raw, limit=5, modality=modality, vocabulary=vocab):
        if s.kind == "exact" or (s.kind in ("word", "fuzzy") and _covers(raw, s.matched)):
            concept = s.concept
            break
    if concept is None:
        near = [s.concept for s in suggest(tree, raw, limit=40, modality=modality, vocabulary=vocab)
                if tree.index[s.concept.id] in vocab][:NEAREST]
        return Resolution(None, raw, None, None, False, near)
    ci = tree.index[concept.id]
    if ci in vocab:
        return Resolution(concept, raw, concept.terminology, concept.color, True, [])
    return Resolution(concept, raw, concept.terminology, concept.color, False, nearest_known(tree, concept, vocab, raw, modality))


def _covers(query: str, matched: str) -> bool:
    """True when the query spells out every word of the matched name (up to typos)."""
    from .search import query_variants

    n = len(normalize(matched).split())
    return any(len(v) == n for v in query_variants(query))


def nearest_known(tree: KnowledgeTree, concept: Concept, vocab: Vocabulary, text: str = "",
                  modality: str = "") -> list[Concept]:
    """Model-known concepts closest to ``concept``: ancestors, then descendants, siblings,
    then text matches."""
    out: list[int] = []

    def push(c: Concept) -> None:
        i = tree.index[c.id]
        if i in vocab and i not in out and c.id != concept.id:
            out.append(i)

    p = concept.parent
    while p is not None and len(out) < NEAREST:
        pc = tree.get(p)
        push(pc)
        p = pc.parent
    stack = list(tree.children(concept.id))
    while stack and len(out) < NEAREST:
        c = stack.pop(0)
        push(c)
        stack.extend(tree.children(c.id))
    if concept.parent is not None:
        for c in tree.children(concept.parent):
            push(c)
    if text:
        for s in suggest(tree, text, limit=30, modality=modality, vocabulary=vocab):
            push(s.concept)
    return [tree.concepts[i] for i in out[:NEAREST]]
