"""Multi-prompt text boxes: several prompts separated by commas, semicolons or newlines.

A trailing laterality word after a comma stays with its prompt ("kidney, left" is one prompt),
because that is how terminologies write laterality.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_SEP = re.compile(r"[,;\n\r]")
_SIDE_ONLY = re.compile(r"\s*(left|right|l|r|lt|rt|bilateral)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class PromptSpan:
    """One prompt of a multi-prompt text: ``text`` is ``source[start:end]`` stripped."""

    text: str
    start: int
    end: int


def prompt_spans(text: str) -> list[PromptSpan]:
    """Every prompt with its character span (empty prompts included, so spans tile the text)."""
    if not isinstance(text, str):
        return []
    pieces: list[tuple[int, int]] = []
    start = 0
    for m in _SEP.finditer(text):
        pieces.append((start, m.start()))
        start = m.end()
    pieces.append((start, len(text)))
    merged: list[tuple[int, int]] = []
    for s, e in pieces:  # "kidney, left" -> one prompt
        if merged and _SIDE_ONLY.fullmatch(text[s:e]) and text[merged[-1][1]] == "," and text[merged[-1][0]:merged[-1][1]].strip():
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    out = []
    for s, e in merged:
        seg = text[s:e]
        lead = len(seg) - len(seg.lstrip())
        out.append(PromptSpan(seg.strip(), s + lead, s + lead + len(seg.strip())))
    return out


def split_prompts(text: str) -> list[str]:
    """The non-empty prompts of ``text``, in order."""
    return [p.text for p in prompt_spans(text) if p.text]


def prompt_at_cursor(text: str, cursor: int) -> PromptSpan:
    """The prompt containing ``cursor`` (a character offset; clipped to the text)."""
    if not isinstance(text, str):
        return PromptSpan("", 0, 0)
    cursor = max(0, min(int(cursor), len(text)))
    spans = prompt_spans(text)
    start = 0
    for sp in spans:
        # the segment owning the cursor runs from the previous separator to the next one
        seg_end = sp.end
        while seg_end < len(text) and not _SEP.match(text[seg_end]):
            seg_end += 1
        if start <= cursor <= seg_end:
            return sp if sp.text or sp.start == sp.end else PromptSpan("", cursor, cursor)
        start = seg_end + 1
    return PromptSpan("", cursor, cursor)


def replace_prompt_at_cursor(text: str, cursor: int, replacement: str) -> tuple[str, int]:
    """Put ``replacement`` in place of the prompt under the cursor.

    Returns the new text and the cursor position just after the inserted prompt."""
    text = text if isinstance(text, str) else ""
    sp = prompt_at_cursor(text, cursor)
    start, end = sp.start, sp.end
    if not sp.text:
        start = end = max(0, min(int(cursor), len(text)))
    prefix = text[:start]
    if prefix and not prefix[-1].isspace() and _SEP.match(prefix[-1]) and prefix[-1] != "\n":
        prefix += " "
    new = prefix + replacement + text[end:]
    return new, len(prefix) + len(replacement)
