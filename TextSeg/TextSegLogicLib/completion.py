"""Suggestions for the prompt box's completer: the knowledge tree's autocomplete.

:func:`make_suggester` ranks with ``TextSegLib.knowledge.suggest`` against the
**selected model's** terms for the modality (``vocabulary_for(modality)``), and each
row says whether that model was trained on the term (``trained``, shown as ★).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

@dataclass(frozen=True)
class Suggestion:
    """One completer row: what matched, what will be inserted, and its coding."""

    preferred: str
    synonym: str = ""  # the synonym that matched, when not the preferred name
    region: str = ""
    code: str = ""
    trained: bool = False  # the selected model was trained on this term (for this modality)

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
        star = "\u2605 " if self.trained else ""
        return f"{star}{head}   [{extra}]" if extra else f"{star}{head}"


Suggester = Callable[[str, str], list[Suggestion]]


def current_fragment(text: str) -> str:
    """The prompt being typed: the last prompt of the box, split as the CLI splits."""
    from TextSegLib.knowledge import prompt_spans

    spans = prompt_spans(text or "")
    return spans[-1].text if spans else ""


def replace_fragment(text: str, choice: str) -> str:
    """Replace the prompt being typed with ``choice`` and start the next prompt."""
    from TextSegLib.knowledge import prompt_spans

    text = text or ""
    spans = prompt_spans(text)
    last = spans[-1] if spans else None
    head = text[: last.start] if last is not None and last.text else text
    head = head.rstrip(" ")
    sep = " " if head and not head.endswith("\n") else ""
    return f"{head}{sep}{choice}, "


def make_suggester(vocabulary_for: Callable[[str], Sequence[str] | None] | Sequence[str] = (), limit: int = 8) -> Suggester:
    """The knowledge autocomplete, marking the terms of the model ``vocabulary_for(modality)`` names.

    ``vocabulary_for`` may also be a fixed term list; an empty answer means "no model
    vocabulary known" (SAT's vocabulary for the modality is then used for ranking)."""
    from TextSegLib.knowledge import suggest as knowledge_suggest

    def terms(modality: str) -> list[str] | None:
        v = vocabulary_for(modality) if callable(vocabulary_for) else vocabulary_for
        return list(v) if v else None

    def suggest(fragment: str, modality: str = "") -> list[Suggestion]:
        hits = knowledge_suggest(fragment, limit=limit, modality=modality or "", vocabulary=terms(modality or ""))
        return [Suggestion(preferred=h.concept.name, synonym=h.matched, region=h.concept.region, code=h.concept.code,
                           trained=bool(h.in_vocabulary)) for h in hits]

    return suggest
