"""The knowledge tree: coded anatomy concepts loaded from ``Resources/knowledge/tree.json.gz``.

The file is produced by ``Resources/knowledge/build_tree.py``; it already holds the search
indexes (sorted names, prefix tables, token postings, token trigrams), so loading is one
``json.loads`` plus light object creation.
"""
from __future__ import annotations

import gzip
import json
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import TerminologyError
from .slicer_terms import TEXTSEG_CONTEXT
from .text import normalize

MODALITY_PREFIXES = ("ct_", "mri_", "pet_", "mr_", "pt_")
#: tree source tags that define a concept's code -> the code list, most specific first
CODE_SOURCES = (("totalsegmentator", "TotalSegmentator SNOMED mapping"),
                ("slicer-ga", "3D Slicer terminology"), ("slicer-dm", "3D Slicer terminology"),
                ("slicer-regions", "3D Slicer terminology"), ("dicom-cid", "DICOM PS3.16 (pydicom)"),
                ("dicom-code", "DICOM PS3.16 (pydicom)"))


@dataclass(frozen=True, eq=False)
class Concept:
    """One coded structure (organ, part, lesion, region) of the tree."""

    id: str
    name: str
    synonyms: tuple[str, ...]
    abbreviations: tuple[str, ...]
    #: Slicer ``TerminologyEntry`` string (as in ``.seg.nrrd`` ``SegmentN_Tags``).
    terminology: str
    #: Recommended display colour, r, g, b in 0..1.
    color: tuple[float, float, float]
    region: str
    parent: str | None
    #: Names from the root to this concept, e.g. ("Abdomen", "Kidney", "Left kidney").
    path: tuple[str, ...]
    #: Where it is segmentable: SAT's modalities when SAT has the term, MRI for atlas-only brain
    #: parcels, otherwise all of ("ct", "mri", "pet").
    modalities: tuple[str, ...]
    #: Model vocabularies that contain it: ``{"sat-ct": ("liver",), "totalsegmentator": ("liver",)}``.
    vocabularies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """Type code plus modifier/region, e.g. ``SCT^64033007^Kidney + SCT^7771000^Left``."""
        parts = self.terminology.split("~")
        out = [parts[2]] + [p for p in (parts[3], parts[5], parts[6]) if p != "^^"]
        return " + ".join(out)

    @property
    def color_rgb255(self) -> tuple[int, int, int]:
        return tuple(round(c * 255) for c in self.color)  # type: ignore[return-value]

    @property
    def is_local_code(self) -> bool:
        """True when no public code list defines the structure (private ``99TEXTSEG`` code)."""
        return "99TEXTSEG^" in self.terminology

    @property
    def code_source(self) -> str:
        """The code list that defines the type code, or "private" for a ``99TEXTSEG`` code."""
        if self.is_local_code:
            return "private"
        return next((label for tag, label in CODE_SOURCES if tag in self.sources), "DICOM PS3.16 (pydicom)")

    def __repr__(self) -> str:
        return f"Concept({self.id!r}, {self.name!r})"


class KnowledgeTree:
    """Concepts plus the search indexes; use :func:`default_tree` for the shipped one."""

    def __init__(self, data: dict):
        if not isinstance(data, dict) or data.get("format") != 3:
            raise TerminologyError("Knowledge tree file has an unknown format.",
                                   "Rebuild it with: python Resources/knowledge/build_tree.py")
        self._col: dict = data["concepts"]
        self._contexts: list[str] = data["contexts"]
        self.sources: list[dict] = data.get("sources", [])
        self.rank: list[int] = self._col["rank"]
        self.ids: list[str] = self._col["id"]
        self.index: dict[str, int] = {cid: i for i, cid in enumerate(self.ids)}
        self.sat: dict[int, dict[str, list[str]]] = {int(k): v for k, v in self._col["sat"].items()}
        self.concepts = _LazyConcepts(self)
        names = data["names"]
        self.keys: list[str] = names["keys"]
        self._display: list[str] = names["display"]
        self.name_concept: list[int] = names["concept"]
        self.name_kind: list[int] = names["kind"]
        self.prefix_top: dict[str, list[int]] = data["prefix_top"]
        self.tok_list: list[str] = data["tokens"]
        self.tok_post: list[list[int]] = data["postings"]
        self.tok_index: dict[str, int] = {t: i for i, t in enumerate(self.tok_list)}
        self.trigrams: dict[str, list[int]] = data["trigrams"]
        self._children: dict[int, list[int]] | None = None
        self._names_of: dict[int, list[int]] | None = None
        self._vocab_cache: dict[tuple, "Vocabulary"] = {}
        self._lock = threading.Lock()

    def display(self, name_index: int) -> str:
        """The name as written in its source (case, punctuation)."""
        d, k = self._display[name_index], self.keys[name_index]
        return k if not d else (k[:1].upper() + k[1:]) if d == "^" else d

    def modality_names(self, i: int) -> str:
        """Comma-separated modalities of concept ``i`` (no object creation)."""
        return self._col["modality_table"][self._col["modalities"][i]]

    def region_name(self, i: int) -> str:
        """Body region of concept ``i`` (no object creation)."""
        return self._col["region_table"][self._col["region"][i]]

    def parent_index(self, i: int) -> int:
        return self._col["parent"][i]

    def _make(self, i: int) -> Concept:
        col = self._col
        if self._names_of is None:
            by: dict[int, list[int]] = {}
            for ni, ci in enumerate(self.name_concept):
                if self.name_kind[ni] in (1, 2):
                    by.setdefault(ci, []).append(ni)
            self._names_of = by
        path, p, guard = [col["name"][i]], col["parent"][i], 0
        while p >= 0 and guard < 32:
            path.append(col["name"][p])
            p, guard = col["parent"][p], guard + 1
        vocab = {f"sat-{m}": tuple(t) for m, t in self.sat.get(i, {}).items()}
        ts = col["ts"].get(str(i))
        if ts:
            vocab["totalsegmentator"] = tuple(ts)
        ctx, *codes = col["codes"][i]
        cat, typ, mod, reg, regmod = (col["code_table"][x] for x in codes)
        context = TEXTSEG_CONTEXT if "99TEXTSEG^" in cat + typ + mod else self._contexts[ctx]  # in no Slicer list
        term = "~".join([context, cat, typ, mod, self._contexts[-1], reg, regmod])
        own = self._names_of.get(i, [])
        src = col["sources"][i]
        parent = col["parent"][i]
        return Concept(
            id=self.ids[i], name=col["name"][i],
            synonyms=tuple(self.display(n) for n in own if self.name_kind[n] == 1),
            abbreviations=tuple(self.display(n) for n in own if self.name_kind[n] == 2),
            terminology=term, color=tuple(v / 255.0 for v in col["color"][i]),
            region=col["region_table"][col["region"][i]], parent=self.ids[parent] if parent >= 0 else None,
            path=tuple(reversed(path)), modalities=tuple(col["modality_table"][col["modalities"][i]].split(",")),
            vocabularies=vocab,
            sources=tuple(s for b, s in enumerate(col["source_table"]) if src >> b & 1))

    # ---- basic access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.concepts)

    def get(self, concept_id: str) -> Concept:
        try:
            return self.concepts[self.index[concept_id]]
        except KeyError:
            raise TerminologyError(f"No concept with id {concept_id!r} in the knowledge tree.",
                                   "Use textseg terms QUERY to find the right id.") from None

    def children(self, concept_id: str) -> list[Concept]:
        if self._children is None:
            ch: dict[int, list[int]] = {}
            for i, p in enumerate(self._col["parent"]):
                if p >= 0:
                    ch.setdefault(p, []).append(i)
            self._children = ch
        return [self.concepts[i] for i in self._children.get(self.index[concept_id], [])]

    def lookup(self, name: str) -> list[Concept]:
        """Concepts having exactly this name (after normalisation), best first."""
        key = normalize(name) if isinstance(name, str) else ""
        if not key:
            return []
        lo = bisect_left(self.keys, key)
        out: list[int] = []
        while lo < len(self.keys) and self.keys[lo] == key:
            if self.name_concept[lo] not in out:
                out.append(self.name_concept[lo])
            lo += 1
        return [self.concepts[i] for i in out]

    # ---- vocabularies -------------------------------------------------------------------------
    def map_vocabulary(self, terms: Iterable[str]) -> dict[str, str | None]:
        """Each model term string -> concept id (``None`` when no concept has that name).

        A leading ``ct_``/``mri_``/``pet_`` (SAT's ``modality_term`` form) is ignored."""
        out: dict[str, str | None] = {}
        for term in terms:
            if not isinstance(term, str):
                continue
            t = term.strip()
            if t.lower().startswith(MODALITY_PREFIXES):
                t = t.split("_", 1)[1]
            hits = self.lookup(t)
            out[term] = hits[0].id if hits else None
        return out

    def vocabulary_concepts(self, terms: Iterable[str]) -> set[str]:
        """Concept ids for a model's term strings (unknown terms are left out)."""
        return {cid for cid in self.map_vocabulary(terms).values() if cid is not None}

    def vocabulary(self, terms: Iterable[str] | None = None, modality: str = "") -> "Vocabulary":
        """A (cached) :class:`Vocabulary`; ``None`` means SAT's terms for ``modality``
        (all SAT terms when ``modality`` is empty)."""
        if terms is None:
            key: tuple = ("sat", modality)
        else:
            terms = tuple(sorted({t for t in terms if isinstance(t, str)}))
            key = ("terms", terms)
        with self._lock:
            v = self._vocab_cache.get(key)
            if v is None:
                if terms is None:
                    mods = (modality,) if modality else ("ct", "mri", "pet")
                    ids = {i for i, s in self.sat.items() if any(m in s for m in mods)}
                else:
                    ids = {self.index[cid] for cid in self.vocabulary_concepts(terms)}
                v = Vocabulary(self, frozenset(ids))
                if len(self._vocab_cache) > 32:
                    self._vocab_cache.clear()
                self._vocab_cache[key] = v
            return v


class _LazyConcepts:
    """List-like view creating :class:`Concept` objects on first access (fast loading)."""

    def __init__(self, tree: KnowledgeTree):
        self._tree = tree
        self._objs: list[Concept | None] = [None] * len(tree.ids)

    def __len__(self) -> int:
        return len(self._objs)

    def __getitem__(self, i: int) -> Concept:
        c = self._objs[i]
        if c is None:
            c = self._objs[i] = self._tree._make(i)
        return c

    def __iter__(self):
        return (self[i] for i in range(len(self._objs)))


class Vocabulary:
    """A set of concepts a model knows, with its own sorted name list for prefix lookups."""

    def __init__(self, tree: KnowledgeTree, concept_indices: frozenset[int]):
        self.concepts = concept_indices
        pairs = sorted((tree.keys[i], i) for i in range(len(tree.keys)) if tree.name_concept[i] in concept_indices)
        self.keys = [p[0] for p in pairs]
        self.name_idx = [p[1] for p in pairs]

    def __contains__(self, concept_index: int) -> bool:
        return concept_index in self.concepts

    def __len__(self) -> int:
        return len(self.concepts)


_DEFAULT: KnowledgeTree | None = None
_DEFAULT_LOCK = threading.Lock()


def load_tree(path: str | Path) -> KnowledgeTree:
    """Load a tree file (``.json.gz`` or ``.json``)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise TerminologyError(f"Cannot read knowledge tree {p}: {exc}.",
                               "Rebuild it with: python Resources/knowledge/build_tree.py") from None
    return KnowledgeTree(data)


def default_tree() -> KnowledgeTree:
    """The shipped knowledge tree (loaded once, then shared)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                from ..resources import resource_path

                _DEFAULT = load_tree(resource_path("knowledge", "tree.json.gz"))
    return _DEFAULT
