"""Suggestions for the prompt box's completer.

:func:`make_suggester` prefers the knowledge tree's autocomplete
(``TextSegLib.knowledge``); without it, it matches the typed words as
prefixes of the words of the engine's vocabulary, after expanding the
abbreviations radiologists type most ("lt kid" -> "left kidney").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

#: abbreviation -> word, for the vocabulary fallback only.
ABBREVIATIONS = {
    "lt": "left", "l": "left", "rt": "right", "r": "right", "sup": "superior", "inf": "inferior",
    "ant": "anterior", "post": "posterior", "int": "internal", "ext": "external", "a": "artery", "v": "vein",
}


@dataclass(frozen=True)
class Suggestion:
    """One completer row: what matched, what will be inserted, and its coding."""

    preferred: str
    synonym: str = ""  # the synonym that matched, when not the preferred name
    region: str = ""
    code: str = ""

    @property
    def short_code(self) -> str:
        """'SCT:64033007' from 'SCT^64033007^Kidney + SCT^7771000^Left' (the type code)."""
        first = self.code.split("+")[0].strip()
        bits = first.split("^")
        return f"{bits[0]}:{bits[1]}" if len(bits) >= 2 else first

    def display(self) -> str:
        head = self.preferred
        if self.synonym and self.synonym.lower() != self.preferred.lower():
            head = f"{self.synonym} \u2192 {self.preferred}"
        extra = " \u00b7 ".join(x for x in (self.region, self.short_code) if x)
        return f"{head}   [{extra}]" if extra else head


Suggester = Callable[[str, str], list[Suggestion]]


def current_fragment(text: str) -> str:
    """The prompt being typed: the text after the last comma, semicolon or newline."""
    return re.split(r"[,\n;]", text or "")[-1].strip()


def replace_fragment(text: str, choice: str) -> str:
    """Replace the fragment being typed with ``choice`` and start the next prompt."""
    parts = re.split(r"([,\n;])", text or "")
    head = "".join(parts[:-1])
    sep = " " if head and not head.endswith("\n") else ""
    return f"{head}{sep}{choice}, "


def _words(s: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", s.lower())


def vocabulary_suggester(vocabulary: Iterable[str], limit: int = 8) -> Suggester:
    """Prefix matching over a plain term list (the fallback completer)."""
    terms = sorted({t.strip() for t in vocabulary if t and t.strip()})
    indexed = [(t, _words(t)) for t in terms]

    def suggest(fragment: str, modality: str = "") -> list[Suggestion]:
        query = [ABBREVIATIONS.get(w, w) for w in _words(fragment)]
        if not query:
            return []
        hits = []
        for term, words in indexed:
            if all(any(w.startswith(q) for w in words) for q in query):
                hits.append((len(words), len(term), term))
        return [Suggestion(t) for _, _, t in sorted(hits)[:limit]]

    return suggest


def knowledge_suggester(limit: int = 8, vocabulary: Sequence[str] = ()) -> Suggester | None:
    """The knowledge tree's autocomplete as a :data:`Suggester`, or None if not installed."""
    try:
        from TextSegLib.knowledge import suggest as knowledge_suggest
    except ImportError:
        return None
    vocab = list(vocabulary) or None  # None: SAT's vocabulary for the modality

    def suggest(fragment: str, modality: str = "") -> list[Suggestion]:
        hits = knowledge_suggest(fragment, limit=limit, modality=modality or "", vocabulary=vocab)
        return [
            Suggestion(preferred=h.concept.name, synonym=h.matched, region=h.concept.region, code=h.concept.code)
            for h in hits
        ]

    return suggest


def make_suggester(vocabulary: Sequence[str] = ()) -> Suggester:
    """Knowledge autocomplete when available, else the vocabulary fallback."""
    return knowledge_suggester(vocabulary=vocabulary) or vocabulary_suggester(vocabulary)
