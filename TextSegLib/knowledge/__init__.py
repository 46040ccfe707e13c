"""Knowledge tree of coded anatomy terms and a fast, forgiving autocomplete.

>>> from TextSegLib.knowledge import suggest, resolve
>>> suggest("lt kidn")[0].concept.name
'Left kidney'

Vocabularies are pluggable: pass the model's term strings (``vocabulary=[...]``) or leave it
``None`` for SAT's vocabulary of the given modality.
"""
from __future__ import annotations

from typing import Iterable

from . import resolve as _resolve_mod
from . import search as _search
from .prompts import PromptSpan, prompt_at_cursor, prompt_spans, replace_prompt_at_cursor, split_prompts
from .resolve import Resolution
from .search import Suggestion
from .tree import Concept, KnowledgeTree, Vocabulary, default_tree, load_tree

__all__ = [
    "Concept", "KnowledgeTree", "PromptSpan", "Resolution", "Suggestion", "Vocabulary", "default_tree",
    "load_tree", "prompt_at_cursor", "prompt_spans", "replace_prompt_at_cursor", "resolve",
    "split_prompts", "suggest", "vocabulary_concepts",
]


def _vocab(tree: KnowledgeTree, vocabulary, modality: str) -> Vocabulary:
    from ..volume import normalize_modality

    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if vocabulary is None:
        return tree.vocabulary(None, normalize_modality(modality))
    from .resolved import model_vocabulary_index  # the same term -> concept mapping as resolution

    return model_vocabulary_index(list(vocabulary), normalize_modality(modality), tree)[0]


def suggest(query: str, limit: int = 10, modality: str = "", vocabulary: Iterable[str] | Vocabulary | None = None,
            tree: KnowledgeTree | None = None) -> list[Suggestion]:
    """Ranked completions for one prompt. ``vocabulary``: the model's term strings
    (default: SAT's terms for ``modality``)."""
    from ..volume import normalize_modality

    tree = tree or default_tree()
    modality = normalize_modality(modality)
    return _search.suggest(tree, query, limit, modality, _vocab(tree, vocabulary, modality))


def resolve(text: str, modality: str = "", vocabulary: Iterable[str] | Vocabulary | None = None,
            tree: KnowledgeTree | None = None) -> Resolution:
    """Free text -> concept + Slicer terminology entry + colour (or ``None`` and nearest known terms)."""
    from ..volume import normalize_modality

    tree = tree or default_tree()
    modality = normalize_modality(modality)
    return _resolve_mod.resolve(tree, text, modality, _vocab(tree, vocabulary, modality))


def vocabulary_concepts(term_strings: Iterable[str], tree: KnowledgeTree | None = None) -> set[str]:
    """Concept ids for a model's term strings such as SAT's "liver", "left kidney", "ct_kidney tumor"."""
    return (tree or default_tree()).vocabulary_concepts(term_strings)
