"""The one prompt-resolution step: typed text -> concept -> the engine's own term.

Every path (CLI, server, Slicer logic, cohort runner) calls :func:`resolve_prompts` once, before
any model work, and hands the resulting :class:`ResolvedPrompt` values to the engine, which
queries with ``term`` and keys its result by ``text``. The segment then takes its name, code and
colour from ``concept``.

>>> from TextSegLib.knowledge.resolved import resolve_prompt
>>> p = resolve_prompt("lt kidn", modality="ct", model_terms={"ct": ["left kidney"]})
>>> (p.concept.name, p.term, p.free_text)
('Left kidney', 'left kidney', False)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import TerminologyError
from .prompts import split_prompts
from .search import Suggestion, suggest
from .text import normalize
from .tree import Concept, KnowledgeTree, Vocabulary, default_tree


class AmbiguousPromptError(TerminologyError):
    """Two or more concepts fit the typed text about equally well."""

    def __init__(self, text: str, candidates: Sequence[Concept]):
        self.text = text
        self.candidates = list(candidates)
        names = "; ".join(f"{c.name} ({short_code(c)})" for c in candidates)
        super().__init__(f"Prompt {text!r} is ambiguous: {names}.",
                         f"Type the full name of the one you mean, e.g. {candidates[0].name!r}.")


def short_code(c: Concept) -> str:
    """The concept's code values with its modifiers spelled out: ``46027005 + Left``, so that
    sided forms of one structure stay distinguishable in a one-line list."""
    parts = [p.split("^") for p in c.code.split(" + ")]
    return " + ".join(p[1] if i == 0 and len(p) > 1 else (p[2] if len(p) > 2 else "^".join(p))
                      for i, p in enumerate(parts))


def _known_terms_hint(tree: KnowledgeTree, vocab: Vocabulary, raw: str, modality: str, model_name: str,
                      near: Sequence[Concept] = ()) -> str:
    """One sentence naming the trained terms nearest to ``raw`` (by place in the tree, else by
    spelling, else the model's first terms) and the command that lists them all."""
    near = list(near) or [s.concept for s in suggest(tree, raw, limit=40, modality=modality, vocabulary=vocab)
                          if tree.index[s.concept.id] in vocab][:5]
    listing = f"`textseg models terms {model_name}" + (f" --modality {modality}`" if modality else "`")
    if near:
        return f"Trained terms nearest to it: {', '.join(c.name for c in near)} (all of them: {listing})."
    known = sorted(tree.concepts[i].name for i in vocab.concepts)
    if not known:
        return f"Run {listing} to see the terms it knows."
    more = f", … (all of them: {listing})" if len(known) > 5 else ""
    return f"It knows no structure near this one; its terms include {', '.join(known[:5])}{more}."


class UnknownTermError(TerminologyError):
    """Free text (or an untrained concept) on an engine that cannot encode free text."""


@dataclass(frozen=True)
class ResolvedPrompt:
    """What one typed prompt means and what the engine is asked for.

    ``text``: as typed (results are keyed by it); ``concept``: the coded structure (``None`` for
    free text); ``term``: the string the engine queries with (its own trained term for the concept,
    else the concept's name, else the text itself); ``in_vocabulary``: the engine was trained on
    ``term``; ``note``: how it was resolved, for the user ("'lt kidn' -> Left kidney")."""

    text: str
    concept: Concept | None
    term: str
    free_text: bool = False
    in_vocabulary: bool = True
    note: str = ""
    nearest: tuple[Concept, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.text

    @property
    def name(self) -> str:
        """Segment name: the preferred term, or the free text as typed."""
        return self.concept.name if self.concept is not None else self.text

    @property
    def terminology(self) -> str:
        return self.concept.terminology if self.concept is not None else ""

    @property
    def color(self) -> tuple[float, float, float] | None:
        return self.concept.color if self.concept is not None else None

    @property
    def concept_id(self) -> str | None:
        return self.concept.id if self.concept is not None else None

    @property
    def code(self) -> str:
        return self.concept.code if self.concept is not None else ""

    def to_json(self) -> dict:
        """Plain fields for JSON reports and the server protocol."""
        return {"text": self.text, "term": self.term, "concept_id": self.concept_id, "name": self.name,
                "code": self.code, "free_text": self.free_text, "in_vocabulary": self.in_vocabulary,
                "note": self.note}


_VOCAB_CACHE: dict[tuple, tuple[Vocabulary, dict[int, str], dict[str, int]]] = {}


def model_vocabulary_index(terms: Sequence[str], modality: str = "", tree: KnowledgeTree | None = None
                           ) -> tuple[Vocabulary, dict[int, str], dict[str, int]]:
    """``(vocabulary, concept index -> the model's term, normalised term -> concept index)``.

    A term that names several concepts (SAT's CT "left ventricle" is the heart's, not the brain's)
    maps to the concept the knowledge tree records for SAT's ``modality`` term; otherwise to the
    tree's first concept of that name."""
    tree = tree or default_tree()
    key = (id(tree), modality, tuple(terms))
    hit = _VOCAB_CACHE.get(key)
    if hit is not None:
        return hit
    wanted = {normalize(t): t for t in terms}
    table: dict[int, str] = {}
    inverse: dict[str, int] = {}
    mods = (modality,) if modality else ("ct", "mri", "pet")
    for i, by_mod in tree.sat.items():  # SAT's own term -> concept assignments, per modality
        for m in mods:
            for t in by_mod.get(m, ()):
                n = normalize(t)
                if n in wanted and n not in inverse:
                    inverse[n] = i
                    table.setdefault(i, wanted[n])
    for term, cid in tree.map_vocabulary([t for n, t in wanted.items() if n not in inverse]).items():
        if cid is not None:
            i = tree.index[cid]
            inverse.setdefault(normalize(term), i)
            table.setdefault(i, term)
    out = (Vocabulary(tree, frozenset(table)), table, inverse)
    if len(_VOCAB_CACHE) > 32:
        _VOCAB_CACHE.clear()
    _VOCAB_CACHE[key] = out
    return out


def _extends(longer: str, shorter: str) -> bool:
    """True when name ``longer`` is ``shorter`` plus more words ("left kidney cyst" vs "left kidney")."""
    a, b = normalize(longer).split(), normalize(shorter).split()
    return len(a) > len(b) and a[:len(b)] == b


def _descends(tree: KnowledgeTree, concept: Concept, ancestor: Concept) -> bool:
    p, guard = concept.parent, 0
    while p is not None and guard < 32:
        if p == ancestor.id:
            return True
        p, guard = tree.get(p).parent, guard + 1
    return False


def _pick(tree: KnowledgeTree, text: str, rows: list[Suggestion], modality: str) -> tuple[Concept | None, list[Concept]]:
    """The concept the text clearly means, or ``(None, close candidates)``.

    The autocomplete's first row wins when it is an exact name (homonyms are ordered by the
    ranking, which weighs modality and context), or when it is clearly ahead of every other
    row: a better match kind or fewer typos; it spells out all of its name's words and the
    other does not ("aotra" -> Aorta, not Ascending aorta); the model knows it and not the
    other; it is segmentable in this modality and the other is not; it is a more common
    structure (tree rank: SAT-trained, in Slicer's or TotalSegmentator's lists, standard code);
    or the other is a part or sided form of it ("kidny" -> Kidney, not Left kidney) or a longer
    name starting with its name ("left kidney" over "left kidney cyst").
    """
    from .resolve import _covers

    if not rows:
        return None, []
    top = rows[0]
    if top.kind == "exact":
        return top.concept, []
    t_cov = _covers(text, top.matched)
    t_rank = tree.rank[tree.index[top.concept.id]]
    rivals = []
    for r in rows[1:]:
        if r.concept.id == top.concept.id or r.score < top.score - 1e-9:
            continue
        if _extends(r.matched, top.matched) or _extends(r.concept.name, top.concept.name):
            continue
        if (t_cov and not _covers(text, r.matched)) or (top.in_vocabulary and not r.in_vocabulary):
            continue
        if modality and modality in tree.modality_names(tree.index[top.concept.id]) \
                and modality not in tree.modality_names(tree.index[r.concept.id]):
            continue
        if tree.rank[tree.index[r.concept.id]] > t_rank or _descends(tree, r.concept, top.concept):
            continue
        rivals.append(r.concept)
    if not rivals:
        return top.concept, []
    return None, [top.concept] + rivals[:3]


def resolve_prompt(text: str, *, modality: str = "", model_terms: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
                   free_text_ok: bool = True, model_name: str = "the model",
                   tree: KnowledgeTree | None = None) -> ResolvedPrompt:
    """Resolve one typed prompt for an engine.

    ``model_terms``: the engine's trained term strings (a list, or ``{modality: [...]}``);
    ``None`` means "any term" (no vocabulary known). ``free_text_ok``: the engine can encode text
    that is not one of its terms (SAT's text tower can; textseg-mini cannot). Raises
    :class:`AmbiguousPromptError` or :class:`UnknownTermError` with a one-line message.
    """
    from ..volume import normalize_modality

    tree = tree or default_tree()
    modality = normalize_modality(modality)
    raw = " ".join(text.split())[:400] if isinstance(text, str) else ""
    if not normalize(raw):
        raise TerminologyError(f"Prompt {text!r} is empty.", "Name a structure, e.g. liver.")
    if isinstance(model_terms, Mapping):
        terms = list(model_terms.get(modality, [])) if modality else [t for v in model_terms.values() for t in v]
    else:
        terms = None if model_terms is None else list(model_terms)
    if terms is not None:
        vocab, table, inverse = model_vocabulary_index(terms, modality, tree)
    else:
        vocab, table, inverse = tree.vocabulary(None, modality), {}, {}
    own = {normalize(t): t for t in terms or ()}
    if normalize(raw) in own:  # one of the model's own terms, as written: it is what the model was taught
        i = inverse.get(normalize(raw))
        c = tree.concepts[i] if i is not None else None
        return ResolvedPrompt(raw, c, own[normalize(raw)], False, True, "" if c else f"{raw!r}: a model term with no code")
    rows = suggest(tree, raw, limit=6, modality=modality, vocabulary=vocab)
    concept, close = _pick(tree, raw, rows, modality)
    if concept is None and close:
        raise AmbiguousPromptError(raw, close)
    if concept is None:
        near = tuple(s.concept for s in suggest(tree, raw, limit=40, modality=modality, vocabulary=vocab)
                     if tree.index[s.concept.id] in vocab)[:5]
        if not free_text_ok:
            hint = _known_terms_hint(tree, vocab, raw, modality, model_name, near)
            raise UnknownTermError(f"Prompt {raw!r} matches no coded structure, and {model_name} cannot segment "
                                   "free text.", hint)
        return ResolvedPrompt(raw, None, raw, free_text=True, in_vocabulary=False,
                              note=f"{raw!r} matches no coded structure: sent as free text, no code", nearest=near)
    ci = tree.index[concept.id]
    said = "" if normalize(raw) == normalize(concept.name) else f"{raw!r} -> {concept.name}"
    if terms is None or ci in table:
        term = table.get(ci) or concept.name.lower()
        return ResolvedPrompt(raw, concept, term, False, True, said)
    from .resolve import nearest_known

    near = tuple(nearest_known(tree, concept, vocab, raw, modality))
    if not free_text_ok:
        mod = f" for {modality.upper()}" if modality else ""
        hint = _known_terms_hint(tree, vocab, raw, modality, model_name, near)
        raise UnknownTermError(f"{concept.name} ({raw!r}) is not a structure {model_name} was trained on{mod}.", hint)
    note = (said + "; " if said else "") + f"{concept.name} is not a trained term of {model_name}: sent as text"
    return ResolvedPrompt(raw, concept, concept.name.lower(), False, False, note, near)


def resolve_prompts(prompts: str | Sequence[str], *, modality: str = "",
                    model_terms: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
                    free_text_ok: bool = True, model_name: str = "the model",
                    tree: KnowledgeTree | None = None) -> list[ResolvedPrompt]:
    """Resolve a prompt box / a list of ``-p`` values, once, before any model work.

    Every item is split on commas, semicolons and newlines exactly like the panel does
    (``"kidney, left"`` stays one prompt). Two prompts naming the same concept are merged
    (the first typed wins). Errors name the offending prompt."""
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    texts: list[str] = []
    for item in items:
        for t in split_prompts(item if isinstance(item, str) else ""):
            if t not in texts:
                texts.append(t)
    if not texts:
        raise TerminologyError("No prompt given.", "Name at least one structure, e.g. liver.")
    out: list[ResolvedPrompt] = []
    seen: dict[str, str] = {}
    for t in texts:
        p = resolve_prompt(t, modality=modality, model_terms=model_terms, free_text_ok=free_text_ok,
                           model_name=model_name, tree=tree)
        key = p.concept_id or f"text:{normalize(p.term)}"
        if key in seen:
            continue
        seen[key] = t
        out.append(p)
    return out


def engine_prompts(engine, prompts: Sequence["ResolvedPrompt | str"], modality: str) -> list[ResolvedPrompt]:
    """``prompts`` as :class:`ResolvedPrompt` for ``engine``: resolved ones pass through, each
    plain string (a library caller's text) is resolved here as one prompt with the engine's
    vocabulary, by the same rule. Repeated texts are dropped."""
    args = None
    out: list[ResolvedPrompt] = []
    seen: set[str] = set()
    for p in prompts:
        if not isinstance(p, ResolvedPrompt):
            if not isinstance(p, str) or not p.strip():
                continue
            if args is None:
                args = engine_resolution_args(engine, modality)
            p = resolve_prompt(p, modality=modality, **args)
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out


def check_modality(engine, modality: str) -> None:
    """Raise :class:`~TextSegLib.errors.ModalityError` when ``engine`` was not trained on ``modality``."""
    from ..errors import ModalityError
    from ..volume import normalize_modality

    known = getattr(engine, "modalities", None)
    m = normalize_modality(modality)
    if m and known and m not in known:
        names = {"ct": "CT", "mri": "MRI", "pet": "PET"}
        raise ModalityError(f"{getattr(engine, 'name', 'The model')} was not trained on {names.get(m, m)} scans "
                            f"(it knows {', '.join(names.get(k, k) for k in known)}).",
                            "Pick a model trained on this modality (textseg models list), or correct --modality.")


def engine_resolution_args(engine, modality: str = "") -> dict:
    """``model_terms``, ``free_text_ok`` and ``model_name`` of an engine, for :func:`resolve_prompts`
    (checks the modality first)."""
    from ..volume import normalize_modality

    modality = normalize_modality(modality)
    check_modality(engine, modality)
    terms = None
    try:
        terms = list(engine.vocabulary(modality)) if modality else None
    except Exception:  # an engine without a vocabulary: any term
        terms = None
    return {"model_terms": terms or None, "free_text_ok": bool(getattr(engine, "free_text", True)),
            "model_name": str(getattr(engine, "name", "the model"))}
