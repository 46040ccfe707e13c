"""How a TextSeg DICOM SEG is told apart in a PACS listing: its series number and description.

* Series number: ``1000 + the source series' number`` (a SEG of series 3 is series 1003), so SEGs
  of different source series in one study get different numbers; a source without a usable
  number gets ``1000 + (a hash of its Series Instance UID) % 9000``.
* Series description: ``TextSeg: Liver, Spleen, +2 more`` (at most 64 characters, DICOM's LO).
"""
from __future__ import annotations

import hashlib
from typing import Sequence

BASE = 1000


def seg_series_number(source) -> int:
    """The SEG's SeriesNumber for a source image dataset (pydicom) of the segmented series."""
    try:
        n = int(str(source.get("SeriesNumber", "")).strip())
    except ValueError:
        n = -1
    if 0 <= n < 9000:
        return BASE + n
    uid = str(source.get("SeriesInstanceUID", "") or "")
    return BASE + int(hashlib.sha256(uid.encode()).hexdigest(), 16) % 9000


def seg_series_description(names: Sequence[str], limit: int = 64) -> str:
    """``TextSeg: A, B, +N more`` naming the stored segments, within ``limit`` characters."""
    head = "TextSeg: "
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        tail = f", +{rest} more" if rest else ""
        candidate = head + ", ".join(shown + [name]) + tail
        if len(candidate) > limit:
            more = len(names) - len(shown)
            return (head + ", ".join(shown) + (", " if shown else "") + f"+{more} more")[:limit]
        shown.append(name)
    return (head + ", ".join(shown))[:limit] if shown else "TextSeg"
