"""Autocomplete and resolve: ranking rules, the issue's examples, hostile input."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from TextSegLib.knowledge import default_tree, resolve, suggest
from TextSegLib.knowledge.text import normalize, osa_distance


@pytest.fixture(scope="module")
def tree():
    return default_tree()


def top(query, **kw):
    return [s.concept.name for s in suggest(query, **kw)]


@pytest.mark.parametrize("query,expected", [
    ("lt kidn", "Left kidney"), ("IVC", "Inferior vena cava"), ("L1", "L1 vertebra"),
    ("liver segment 4a", "Couinaud hepatic segment IVa"), ("pancreatic tumour", "Pancreas tumor"),
    ("hepatic parenchyma", "Liver"), ("kidny", "Kidney"), ("aotra", "Aorta"), ("lvier", "Liver"),
    ("oesophagus", "Esophagus"), ("rib 3 left", "Left third rib"), ("RUL", "Right upper lobe of lung"),
])
def test_issue_examples_come_first(query, expected):
    assert top(query, limit=3)[0] == expected


def test_suggestion_fields(tree):
    s = suggest("ivc", limit=1)[0]
    assert s.matched == "IVC" and s.kind == "exact" and s.in_vocabulary
    assert s.concept.path[-1] == "Inferior vena cava"
    assert s.concept.code.startswith("SCT^64131007^")


def test_match_kinds_rank_in_order(tree):
    kinds = ["exact", "prefix", "word", "substring", "fuzzy"]
    for q in ("liver", "live", "vena", "epatic", "kidnye"):
        got = [kinds.index(s.kind) for s in suggest(q, limit=10)]
        assert got == sorted(got), (q, got)
    assert suggest("liver", limit=1)[0].kind == "exact"
    assert suggest("live", limit=1)[0].kind == "prefix"
    assert {s.kind for s in suggest("vena cava", limit=10)} <= {"word", "prefix", "exact"}
    assert suggest("kidnye", limit=1)[0].kind == "fuzzy"


def test_model_terms_first_at_equal_quality(tree):
    # SAT knows "left putamen" but not the unsided "putamen": both are prefix matches of "putam"
    default = suggest("putam", limit=3)
    assert default[0].in_vocabulary and not next(s for s in default if s.concept.name == "Putamen").in_vocabulary
    # a model that only knows "putamen" flips the order
    custom = suggest("putam", limit=3, vocabulary=["putamen"])
    assert custom[0].concept.name == "Putamen" and custom[0].in_vocabulary


def test_modality_changes_which_terms_are_known(tree):
    ct = {s.concept.name: s.in_vocabulary for s in suggest("brain tumor", limit=5, modality="ct")}
    mri = {s.concept.name: s.in_vocabulary for s in suggest("brain tumor", limit=5, modality="MR")}
    assert mri["Brain tumor"] and not ct["Brain tumor"]


def test_resolve_known_unknown_and_nearest(tree):
    r = resolve("lt kidney", modality="ct")
    assert r.concept.name == "Left kidney" and r.in_vocabulary and r.nearest == []
    assert "SCT^7771000^Left" in r.terminology and len(r.color) == 3
    r = resolve("liver segment 4a", modality="ct")
    assert r.concept.name == "Couinaud hepatic segment IVa" and not r.in_vocabulary
    assert [c.name for c in r.nearest][:2] == ["Couinaud hepatic segment IV", "Liver"]
    r = resolve("qzxv wobble", modality="ct")
    assert r.concept is None and r.terminology is None and not r.in_vocabulary
    r = resolve("liv", modality="ct")  # a fragment is not a term ...
    assert r.concept is None and "Liver" in [c.name for c in r.nearest]  # ... but has suggestions


def test_vocabulary_is_pluggable(tree):
    r = resolve("spleen", vocabulary=["liver", "left kidney"])
    assert r.concept.name == "Spleen" and not r.in_vocabulary
    assert all(c.name in ("Liver", "Left kidney") for c in r.nearest)
    assert resolve("liver", vocabulary=["ct_liver"]).in_vocabulary


@pytest.mark.parametrize("bad", ["", "   \t\n", "x" * 10_000, "liver\x00\x07\x1b[31m", "🫀🫁 liver 🧠",
                                 "كبد الكبد", "כבד", "\u202eliver\u202c", "％＄＃", "l" * 5000 + " kidney",
                                 "\ud800", "a" * 3 + "\u0301" * 500])
def test_hostile_input_is_fast_and_safe(bad):
    t = time.perf_counter()
    rows = suggest(bad, limit=10)
    r = resolve(bad)
    assert time.perf_counter() - t < 1.0
    assert isinstance(rows, list) and len(rows) <= 10
    assert r.text == (bad.strip()[:400])


def test_non_string_and_odd_limits():
    assert suggest(None) == [] and suggest(123) == [] and suggest("liver", limit=0) == []
    assert len(suggest("l", limit=10_000)) <= 200
    assert resolve(None).concept is None


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_text_never_raises(text):
    rows = suggest(text, limit=5)
    assert len(rows) <= 5
    assert all(r.score <= 1.1 for r in rows)


def test_text_helpers():
    assert normalize("Oesophageal  TUMOUR!") == "esophageal tumor"
    assert normalize("Haemorrhage, grey-matter") == "hemorrhage gray matter"
    assert osa_distance("aorat", "aorta") == 1 and osa_distance("kidny", "kidney") == 1
    assert osa_distance("liver", "spleen", limit=2) == 3
    assert osa_distance("kidn", "kidneys", 1, prefix=True) == 0
