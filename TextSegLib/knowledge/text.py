"""Text normalisation shared by the tree builder and the autocomplete engine.

Both sides use :func:`normalize`, so spelling variants (British/American,
accents, punctuation, case) compare equal: ``"Oesophageal tumour"`` and
``"esophageal tumor"`` normalise to the same key.
"""
from __future__ import annotations

import re
import unicodedata

#: Whole-token spelling canonicalisation (British -> American and a few others).
TOKEN_CANON: dict[str, str] = {
    "tumour": "tumor", "tumours": "tumors", "grey": "gray", "colour": "color",
    "oesophagus": "esophagus", "oesophageal": "esophageal", "oedema": "edema",
    "foetal": "fetal", "foetus": "fetus", "fibre": "fiber", "fibres": "fibers",
    "centre": "center", "haemorrhage": "hemorrhage", "haemorrhagic": "hemorrhagic",
    "haematoma": "hematoma", "anaemia": "anemia", "caecum": "cecum",
    "sulphur": "sulfur", "ischaemia": "ischemia", "ischaemic": "ischemic",
    "oestrogen": "estrogen", "paediatric": "pediatric", "leukaemia": "leukemia",
    "haemangioma": "hemangioma", "haemothorax": "hemothorax",
    "haemopericardium": "hemopericardium",
}
_PREFIX_CANON = (("haem", "hem"), ("oesoph", "esoph"), ("oedem", "edem"), ("caec", "cec"), ("paed", "ped"))

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_MAX_LEN = 200  # longer input is truncated: no anatomical name is that long


def canon_token(tok: str) -> str:
    """Canonical spelling of one lower-case token."""
    t = TOKEN_CANON.get(tok)
    if t is not None:
        return t
    for old, new in _PREFIX_CANON:
        if tok.startswith(old):
            return new + tok[len(old):]
    return tok


def fold(text: str) -> str:
    """Lower-case, strip accents, turn every non-alphanumeric run into one space."""
    if not text:
        return ""
    text = text[: _MAX_LEN * 4]
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().replace("'", "").replace("\u2019", "")
    return _NON_ALNUM.sub(" ", text).strip()[:_MAX_LEN].strip()


def tokens(text: str) -> list[str]:
    """Normalised tokens of ``text`` (see :func:`normalize`)."""
    return [canon_token(t) for t in fold(text).split()]


def normalize(text: str) -> str:
    """Search key of a name or query: folded, canonical spelling, single spaces."""
    return " ".join(tokens(text))


def trigrams(word: str) -> set[str]:
    """Character trigrams of a word padded with one ``$`` on each side."""
    w = f"${word}$"
    return {w[i : i + 3] for i in range(len(w) - 2)}


def osa_distance(a: str, b: str, limit: int = 2, prefix: bool = False) -> int:
    """Optimal-string-alignment edit distance (insert, delete, substitute, adjacent
    transposition), or ``limit + 1`` once it must exceed ``limit``. With ``prefix``, the
    distance from ``a`` to the closest *prefix* of ``b`` (for words still being typed)."""
    la, lb = len(a), len(b)
    if prefix:
        b = b[: la + limit]
        lb = len(b)
    elif abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        row_min = i
        ai = a[i - 1]
        for j in range(1, lb + 1):
            cost = 0 if ai == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            if v < row_min:
                row_min = v
        if row_min > limit:
            return limit + 1
        prev2, prev = prev, cur
    d = min(prev[max(0, la - limit):]) if prefix else prev[lb]
    return d if d <= limit else limit + 1
