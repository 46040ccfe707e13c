"""Forgiving autocomplete over the knowledge tree.

Match quality, best first: exact name > prefix of the name > every query word is a prefix of
a word in the name (any order) > substring inside a word > typo-tolerant (1-2 edits,
transpositions). At equal quality, concepts the model knows come first. Tokens are expanded
before matching ("lt" -> "left", "ant" -> "anterior") so "lt kidn" finds "Left kidney".

Ambiguous names (the heart's and the brain's "left ventricle") rank by the common meaning:
the concept the model knows first, then, among exact matches, the concept whose preferred name
it is before those that have it only as a synonym (the brain's is an atlas synonym). A region word
typed with a name that the whole text does not match exactly or as a prefix ("brain left
ventricle", "liver caudate") is a context: the name is also searched without the region word
among that region's concepts, and concepts of that region come first among equally good matches.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .text import normalize, osa_distance, trigrams
from .tree import Concept, KnowledgeTree, Vocabulary

KINDS = ("exact", "prefix", "word", "substring", "fuzzy")
EXPAND = {"l": "left", "lt": "left", "lft": "left", "r": "right", "rt": "right", "rgt": "right",
          "ant": "anterior", "post": "posterior", "sup": "superior", "inf": "inferior",
          "med": "medial", "lat": "lateral", "bilat": "bilateral", "seg": "segment",
          "segs": "segments", "int": "internal", "ext": "external", "prox": "proximal",
          "dist": "distal", "mid": "middle", "vert": "vertebra", "a": "artery", "v": "vein",
          "gl": "gland", "ca": "cancer", "mets": "metastasis", "ln": "lymph node", "lns": "lymph nodes"}
#: abbreviations also expanded as the last word (nobody starts a longer word with them)
SAFE_LAST = {"l", "lt", "lft", "r", "rt", "rgt", "ln", "lns", "mets"}
PARAPHRASE = {"hepatic": "liver", "renal": "kidney", "pulmonary": "lung", "pancreatic": "pancreas",
              "splenic": "spleen", "gastric": "stomach", "cardiac": "heart", "cerebral": "brain",
              "vesical": "bladder", "colonic": "colon", "rectal": "rectum", "adrenal": "adrenal gland",
              "prostatic": "prostate", "thyroidal": "thyroid", "osseous": "bone", "parenchyma": "",
              "tissue": "", "the": "", "of": ""}
#: words that name a body region when typed beside a structure name -> regions they select
REGION_CONTEXT = {
    "brain": ("brain", "head and neck"), "cerebral": ("brain", "head and neck"),
    "cerebrum": ("brain",), "intracranial": ("brain", "head and neck"), "cranial": ("brain", "head and neck"),
    "neuro": ("brain",), "heart": ("thorax",), "cardiac": ("thorax",), "cardio": ("thorax",),
    "myocardial": ("thorax",), "chest": ("thorax",), "thoracic": ("thorax",), "lung": ("thorax",),
    "pulmonary": ("thorax",), "abdominal": ("abdomen",), "liver": ("abdomen",), "hepatic": ("abdomen",),
    "pancreas": ("abdomen",), "pancreatic": ("abdomen",), "kidney": ("abdomen",), "renal": ("abdomen",),
    "pelvic": ("pelvis",), "spinal": ("spine",),
}
PREFIX_SCAN = 200
VOCAB_SCAN = 64
TOKEN_SCAN = 300
NAME_SCAN = 1500


@dataclass(frozen=True)
class Suggestion:
    """One autocomplete row: the concept, the name that matched and how well."""

    concept: Concept
    matched: str
    score: float
    kind: str
    in_vocabulary: bool

    @property
    def name(self) -> str:
        return self.concept.name


def query_variants(query: str) -> list[list[str]]:
    """Token lists to search for: as typed, with abbreviations expanded, then paraphrased."""
    toks = normalize(query).split()
    if not toks:
        return []
    out = [toks]
    # the last word may still be being typed: only laterality is expanded there ("kidney lt")
    exp = [EXPAND.get(t, t) if i < len(toks) - 1 or t in SAFE_LAST else t for i, t in enumerate(toks)] \
        if len(toks) > 1 else toks
    exp = " ".join(exp).split()
    if exp != toks:
        out.append(exp)
    para = " ".join(PARAPHRASE.get(t, t) for t in exp).split()
    if para and para != exp:
        out.append(para)
    return out


class _Matcher:
    def __init__(self, tree: KnowledgeTree, vocab: Vocabulary | None, limit: int = 10):
        self.t = tree
        self.limit = limit
        self.vocab = vocab
        self.best: dict[int, tuple] = {}  # concept index -> (kind, dist, name index)
        self._fuzzy_cache: dict[tuple[str, bool], list[tuple[int, int]]] = {}

    def add(self, name_idx: int, kind: int, dist: int = 0) -> None:
        ci = self.t.name_concept[name_idx]
        cur = self.best.get(ci)
        cand = (kind, dist, name_idx)
        if cur is None or (kind, dist, self.t.name_kind[name_idx]) < (cur[0], cur[1], self.t.name_kind[cur[2]]):
            self.best[ci] = cand

    def prefix(self, q: str) -> None:
        t = self.t
        lo = bisect_left(t.keys, q)
        top = t.prefix_top.get(q)
        rng: Iterable[int]
        if top is not None:  # a busy prefix: its precomputed best names, plus the exact name(s)
            rng = list(top) + list(range(lo, min(lo + 8, len(t.keys))))
        else:
            rng = range(lo, min(lo + PREFIX_SCAN, len(t.keys)))
        for i in rng:
            k = t.keys[i]
            if not k.startswith(q):
                if i >= lo and top is None:
                    break
                continue
            self.add(i, 0 if k == q else 1)
        if self.vocab is not None:
            v = self.vocab
            j = bisect_left(v.keys, q)
            for jj in range(j, min(j + VOCAB_SCAN, len(v.keys))):
                if not v.keys[jj].startswith(q):
                    break
                self.add(v.name_idx[jj], 0 if v.keys[jj] == q else 1)

    def _token_range(self, tok: str) -> range:
        lst = self.t.tok_list
        lo = bisect_left(lst, tok)
        hi = lo
        while hi < len(lst) and hi - lo < TOKEN_SCAN and lst[hi].startswith(tok):
            hi += 1
        return range(lo, hi)

    def tokens(self, qt: list[str], fuzzy: bool, substring: bool) -> None:
        """Names whose words cover every query word (prefix, substring or typo match)."""
        t = self.t
        maps: list[dict[str, int]] = []
        for j, tok in enumerate(qt):
            last = j == len(qt) - 1
            if not last and len(tok) <= 2:  # a short inner word is an abbreviation, not a partial word
                m: dict[str, int] = {tok: 0} if tok in t.tok_index else {}
            else:
                m = {t.tok_list[i]: 0 for i in self._token_range(tok)}
            if substring and last and len(tok) >= 3:
                for ti in self._substring_tokens(tok):
                    m.setdefault(t.tok_list[ti], 0)
            if fuzzy and len(tok) >= 4 and (len(qt) == 1 or not m):  # in phrases, fuzz only unknown words
                for ti, d in self._fuzzy_tokens(tok, last):
                    if t.tok_list[ti] not in m or m[t.tok_list[ti]] > d:
                        m[t.tok_list[ti]] = d
            if not m:
                return
            maps.append(m)
        groups: dict[tuple[int, int], list[int]] = {}
        if len(qt) == 1:  # every name holding a candidate word matches; no verification needed
            tok = qt[0]
            for w, d in maps[0].items():
                kind = 4 if d else (2 if w.startswith(tok) else 3)
                groups.setdefault((kind, d), []).extend(t.tok_post[t.tok_index[w]])
        else:
            self._verify(qt, maps, groups)
        self._add_groups(groups)

    def _verify(self, qt: list[str], maps: list[dict[str, int]], groups: dict) -> None:
        """Multi-word queries: each query word must match some word of the name."""
        t = self.t
        sets = []
        for m in maps:
            u: set[int] = set()
            for w in m:
                u.update(t.tok_post[t.tok_index[w]])
            sets.append(u)
        sets.sort(key=len)
        cand = sets[0].intersection(*sets[1:])
        for ni in sorted(cand)[:NAME_SCAN]:
            words = t.keys[ni].split()
            total, subs = 0, False
            for m, tok in zip(maps, qt):
                d = min((m[x] for x in words if x in m), default=None)
                if d is None:
                    total = 99
                    break
                total += d
                if d == 0 and not any(x.startswith(tok) for x in words):
                    subs = True
            if total <= 2:
                kind = 4 if total else (3 if subs else 2)
                groups.setdefault((kind, total), []).append(ni)

    def _add_groups(self, groups: dict[tuple[int, int], list[int]]) -> None:
        """Add matches best kind first, model-known concepts first; stop once ``limit`` are held."""
        t, vocab = self.t, self.vocab
        for key in sorted(groups):
            names = groups[key]
            known = [ni for ni in names if t.name_concept[ni] in vocab] if vocab is not None else names
            for batch in (known, names):
                for ni in batch:
                    self.add(ni, key[0], key[1])
                if len(self.best) >= self.limit:
                    return

    def _substring_tokens(self, tok: str) -> list[int]:
        grams = [g for g in trigrams(tok) if "$" not in g]
        sets = [self.t.trigrams.get(g) for g in grams]
        if not sets or any(s is None for s in sets):
            return []
        sets.sort(key=len)
        cand = set(sets[0])
        for s in sets[1:4]:
            cand.intersection_update(s)
        return [ti for ti in cand if tok in self.t.tok_list[ti]][:TOKEN_SCAN]

    def _fuzzy_tokens(self, tok: str, partial: bool) -> list[tuple[int, int]]:
        key = (tok, partial)
        hit = self._fuzzy_cache.get(key)
        if hit is not None:
            return hit
        limit = 1 if len(tok) <= 5 else 2
        counts: Counter[int] = Counter()
        grams = trigrams(tok)
        if partial:
            grams = {g for g in grams if not g.endswith("$")}
        for g in grams:
            counts.update(self.t.trigrams.get(g, ()))
        t = self.t
        # query-side edits catch what trigrams miss: swapped letters ("lvier") and an extra letter
        edits = {tok[:i] + tok[i + 1] + tok[i] + tok[i + 2:] for i in range(len(tok) - 1)}
        edits |= {tok[:i] + tok[i + 1:] for i in range(len(tok))}
        for e in edits:
            if partial:
                lo = bisect_left(t.tok_list, e)
                for ti in range(lo, min(lo + 5, len(t.tok_list))):
                    if t.tok_list[ti].startswith(e):
                        counts[ti] += 100
            elif e in t.tok_index:
                counts[t.tok_index[e]] += 100
        out = []
        for ti, _n in counts.most_common(40):
            w = self.t.tok_list[ti]
            if len(w) < len(tok) - limit or (not partial and len(w) > len(tok) + limit):
                continue
            d = osa_distance(tok, w, limit, prefix=partial)
            if 0 < d <= limit:
                out.append((ti, d))
        self._fuzzy_cache[key] = out
        return out


def suggest(tree: KnowledgeTree, query: str, limit: int = 10, modality: str = "",
            vocabulary: Vocabulary | None = None) -> list[Suggestion]:
    """Ranked completions of one typed prompt (never raises on odd text)."""
    if not isinstance(query, str) or limit <= 0:
        return []
    limit = min(int(limit), 200)
    variants = query_variants(query[:400])
    if not variants:
        return []
    vocab = vocabulary if vocabulary is not None else tree.vocabulary(None, modality)
    m = _search(tree, variants, vocab, limit)
    context = _context(variants[0])
    alone: dict[int, int] = {}  # how well the name without the region word matched
    rest = query_variants(" ".join(t for t in variants[0] if t not in REGION_CONTEXT)) if context else []
    if not rest or any(v[0] <= 1 for v in m.best.values()):
        context = frozenset()  # no region word, or the text as typed is (the start of) a name
    else:  # "brain left ventricle" names nothing as typed: the name alone, as a word-level match
        for ci, (kind, dist, ni) in _search(tree, rest, vocab, limit).best.items():
            if tree.region_name(ci) not in context:  # the region word restricts the name alone
                continue
            cand = (max(kind, 2), dist, ni)
            if ci not in m.best or cand[:2] < m.best[ci][:2]:
                m.best[ci] = cand
            alone[ci] = kind
    rank, concepts = tree.rank, tree.concepts

    mod_of = tree.modality_names
    region_of = tree.region_name

    def order(item):
        ci, (kind, dist, ni) = item
        off = 1 if modality and modality not in mod_of(ci) else 0
        nk = tree.name_kind[ni]
        miss = 1 if context and region_of(ci) not in context else 0
        return (kind, dist, miss, alone.get(ci, 9) if context else 0, ci not in vocab, nk > 0 and kind == 0, off,
                nk >= 2, len(tree.keys[ni]), nk > 0, rank[ci], ci)

    out = []
    for ci, (kind, dist, ni) in sorted(m.best.items(), key=order)[:limit]:
        inv = ci in vocab
        score = round(1.0 - 0.2 * kind - 0.05 * dist + (0.05 if inv else 0.0), 3)
        out.append(Suggestion(concepts[ci], tree.display(ni), score, KINDS[kind], inv))
    return out


def _context(tokens: list[str]) -> frozenset[str]:
    """Regions named by region words typed beside other words (none for "brain" alone)."""
    found = [REGION_CONTEXT[t] for t in tokens if t in REGION_CONTEXT]
    if not found or len(found) == len(tokens):
        return frozenset()
    return frozenset(r for regions in found for r in regions)


def _search(tree: KnowledgeTree, variants: list[list[str]], vocab: Vocabulary, limit: int) -> _Matcher:
    m = _Matcher(tree, vocab, limit)
    for qt in variants:
        m.prefix(" ".join(qt))
    for qt in variants:
        if len(m.best) >= limit and min(v[0] for v in m.best.values()) <= 1 and \
                sum(1 for v in m.best.values() if v[0] <= 1) >= limit:
            break
        m.tokens(qt, fuzzy=False, substring=True)
    good = sum(1 for v in m.best.values() if v[0] <= 1)
    if len(m.best) < limit and not (good and len(m.best) >= 3):  # typo search only fills a thin list
        for qt in variants:
            m.tokens(qt, fuzzy=True, substring=False)
    return m
