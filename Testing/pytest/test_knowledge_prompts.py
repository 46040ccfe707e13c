"""Multi-prompt text: splitting, the prompt under the cursor, replacing it."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from TextSegLib.knowledge import prompt_at_cursor, prompt_spans, replace_prompt_at_cursor, split_prompts


def test_split_on_commas_semicolons_newlines():
    assert split_prompts("liver, spleen;  lt kidn\n\nIVC ,") == ["liver", "spleen", "lt kidn", "IVC"]
    assert split_prompts("") == [] and split_prompts(" ,;\n") == []


def test_laterality_after_a_comma_stays_with_its_prompt():
    assert split_prompts("kidney, left, liver") == ["kidney, left", "liver"]
    assert split_prompts("left, liver") == ["left", "liver"]


def test_prompt_at_cursor():
    text = "liver, lt kid; spleen"
    assert prompt_at_cursor(text, 0).text == "liver"
    assert prompt_at_cursor(text, 9).text == "lt kid"
    sp = prompt_at_cursor(text, 13)
    assert (sp.text, text[sp.start:sp.end]) == ("lt kid", "lt kid")
    assert prompt_at_cursor(text, 999).text == "spleen"
    assert prompt_at_cursor(text, -5).text == "liver"
    assert prompt_at_cursor("liver, ", 7).text == ""


def test_replace_prompt_at_cursor():
    new, cur = replace_prompt_at_cursor("liver, lt kid; spleen", 10, "Left kidney")
    assert new == "liver, Left kidney; spleen" and new[:cur] == "liver, Left kidney"
    new, cur = replace_prompt_at_cursor("liver,", 6, "Spleen")
    assert new == "liver, Spleen" and cur == len(new)
    new, _ = replace_prompt_at_cursor("", 0, "Liver")
    assert new == "Liver"


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet="ab ,;\n", max_size=30), st.integers(-3, 40))
def test_spans_and_replacement_are_consistent(text, cursor):
    for sp in prompt_spans(text):
        assert text[sp.start:sp.end] == sp.text
    sp = prompt_at_cursor(text, cursor)
    assert text[sp.start:sp.end] == sp.text
    new, cur = replace_prompt_at_cursor(text, cursor, "X")
    assert 0 <= cur <= len(new) and new[cur - 1] == "X"
    # only the prompt under the cursor changes: the text before and after it is kept
    start, end = (sp.start, sp.end) if sp.text else (max(0, min(cursor, len(text))),) * 2
    assert new.startswith(text[:start]) and new.endswith(text[end:])
    assert new.count("X") == 1
