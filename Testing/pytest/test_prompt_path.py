"""The one prompt path: typed text -> concept -> the engine's own term, before any model work."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _bundled_helpers import single_thread_bundled_engine
from TextSegLib.cli.main import main
from TextSegLib.errors import ModalityError
from TextSegLib.knowledge import default_tree, suggest
from TextSegLib.knowledge.resolved import (AmbiguousPromptError, UnknownTermError, resolve_prompt,
                                           resolve_prompts)
from TextSegLib.knowledge.text import normalize
from TextSegLib.models.catalog import model_vocabulary, sat_vocabulary

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "benchmarks" / "data" / "autocomplete_queries.tsv"
SAMPLE = REPO / "Resources" / "samples" / "abdomen_ct_sample.nii.gz"


def _benchmark_rows(categories):
    rows = [line.rstrip("\n").split("\t") for line in QUERIES.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return [(q, e) for q, e, c in rows if c in categories]


def _names(c):
    return {normalize(n) for n in (c.name, *c.synonyms)}


@pytest.mark.parametrize("model", ["SAT-Nano", "textseg-mini"])
def test_benchmark_forms_resolve_like_the_autocomplete_ranks_them(model):
    """Every laterality / abbreviation / partial form whose first suggestion is right resolves to
    that concept and sends the engine exactly the term its full name sends."""
    from TextSegLib.knowledge.resolved import model_vocabulary_index

    _, vocab, free_text = model_vocabulary(model)
    terms = vocab["ct"]
    marks, own_term, _ = model_vocabulary_index(terms, "ct")
    tree = default_tree()
    checked = refused = 0
    for query, expected in _benchmark_rows({"laterality", "abbreviation", "partial"}):
        top = suggest(query, limit=1, modality="ct", vocabulary=marks)
        if not top or normalize(expected) not in _names(top[0].concept):
            continue
        own = own_term.get(tree.index[top[0].concept.id])
        if own is None and not free_text:  # untrained on textseg-mini: refused, never sent as text
            with pytest.raises(UnknownTermError):
                resolve_prompt(query, modality="ct", model_terms=terms, free_text_ok=free_text)
            refused += 1
            continue
        typed = resolve_prompt(query, modality="ct", model_terms=terms, free_text_ok=free_text)
        assert typed.concept.id == top[0].concept.id, (query, typed.concept.name)
        # the engine's own trained term for the concept (SAT's text tower gets the name otherwise)
        assert typed.term == (own or top[0].concept.name.lower()), (query, typed.term, own)
        assert typed.in_vocabulary == (own is not None)
        checked += 1
    assert checked >= (150 if model == "SAT-Nano" else 20), (checked, refused)


def test_laterality_forms_send_one_query():
    terms = sat_vocabulary()["ct"]
    got = {resolve_prompt(t, modality="ct", model_terms=terms).term
           for t in ("lt kidn", "left kidney", "kidney, left", "L kidney", "Lt kidney", "kidney lt")}
    assert got == {"left kidney"}


def test_ambiguous_unknown_and_free_text_rules():
    mini = model_vocabulary("textseg-mini")[1]["ct"]
    with pytest.raises(AmbiguousPromptError) as e:
        resolve_prompt("iliac", modality="ct", model_terms=mini, free_text_ok=False)
    assert "common iliac" in str(e.value).lower() and "\n" not in str(e.value)
    with pytest.raises(UnknownTermError, match="cannot segment free text"):
        resolve_prompt("zorblax", modality="ct", model_terms=mini, free_text_ok=False, model_name="textseg-mini")
    with pytest.raises(UnknownTermError, match="not a structure textseg-mini was trained on"):
        resolve_prompt("hippocampus", modality="ct", model_terms=mini, free_text_ok=False, model_name="textseg-mini")
    p = resolve_prompt("zorblax", modality="ct", model_terms=sat_vocabulary()["ct"], free_text_ok=True)
    assert p.free_text and p.concept is None and p.terminology == "" and p.term == "zorblax"
    # one prompt box: commas split like the panel, a trailing side stays with its prompt, repeats merge
    ps = resolve_prompts(["liver, spleen", "kidney, left", "lt kidney"], modality="ct", model_terms=mini,
                         free_text_ok=False)
    assert [p.name for p in ps] == ["Liver", "Spleen", "Left kidney"]


def test_modality_the_model_was_not_trained_on_is_refused():
    from TextSegLib.knowledge.resolved import check_modality

    class Mini:
        name, modalities = "textseg-mini", ("ct", "mri")

    with pytest.raises(ModalityError, match="not trained on PET"):
        check_modality(Mini(), "pet")
    check_modality(Mini(), "mri")


def _cropped_sample(tmp_path):
    """The demo sample cut to 256 x 256 x 20 voxels around the upper abdomen (fast on a CPU)."""
    from TextSegLib.io import read_volume, write_volume

    vol = read_volume(str(SAMPLE), modality="ct")
    i0, j0 = 128, 128
    shift = np.eye(4)
    shift[:3, 3] = (i0, j0, 0)
    small = vol.with_array(np.ascontiguousarray(vol.array[i0:i0 + 256, j0:j0 + 256, :]),
                           ijk_to_ras=vol.ijk_to_ras @ shift)
    path = tmp_path / "sample_crop.nii.gz"
    write_volume(small, path)
    return path, read_volume(str(path), modality="ct")


@pytest.fixture(scope="module")
def bundled():
    with single_thread_bundled_engine() as engine:
        yield engine


def test_typed_form_gives_the_mask_of_the_full_name(bundled, tmp_path):
    _, vol = _cropped_sample(tmp_path)
    args = dict(modality="ct", model_terms=bundled.vocabulary("ct"), free_text_ok=False)
    typed = [resolve_prompt(t, **args) for t in ("lt kidn", "left kidney", "hepatic parenchyma", "liver")]
    res = bundled.segment(vol, typed, modality="ct")
    assert set(res.masks) == {"lt kidn", "left kidney", "hepatic parenchyma", "liver"}
    assert np.array_equal(res.masks["lt kidn"], res.masks["left kidney"])
    assert np.array_equal(res.masks["hepatic parenchyma"], res.masks["liver"]) and res.masks["liver"].any()
    assert res.prompts["lt kidn"].concept.name == "Left kidney"


def test_cli_lt_kidn_on_the_sample_is_the_coded_left_kidney(bundled, tmp_path, capsys):
    from TextSegLib.io import read_seg_nrrd

    path, _ = _cropped_sample(tmp_path)
    out = tmp_path / "a.seg.nrrd"
    rc = main(["segment", str(path), "-p", "lt kidn, liver", "--model", "textseg-mini", "--modality", "ct",
               "--threads", "1", "-o", str(out), "--stats", str(tmp_path / "a.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "'lt kidn' -> Left kidney" in err
    seg = read_seg_nrrd(out)
    assert "Liver" in seg.names
    table = (tmp_path / "a.csv").read_text()
    assert table.splitlines()[0].startswith("name,found,voxels,volume_ml,mean,std,min,max")
    if "Left kidney" in seg.names:  # found or not, never under the raw text and never without its code
        assert "SCT^64033007^Kidney~SCT^7771000^Left" in seg["Left kidney"].terminology
    assert "lt kidn" not in seg.names


def test_cli_refuses_before_any_model_work(tmp_path, capsys):
    path = str(SAMPLE)
    out = str(tmp_path / "x.seg.nrrd")
    cases = [(["-p", "zorblax"], "cannot segment free text"),
             (["-p", "iliac"], "is ambiguous"),
             (["-p", "liver", "--modality", "pet"], "not trained on PET")]
    for extra, message in cases:
        rc = main(["segment", path, "--model", "textseg-mini", "-o", out, *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, err
        assert len([line for line in err.splitlines() if line.startswith("textseg: error")]) == 1
        assert "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_terms_marks_the_selected_models_vocabulary(capsys):
    def starred(query, *extra):
        assert main(["terms", query, "-n", "3", *extra]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        return first.startswith("*")

    assert starred("SMA", "--model", "textseg-mini", "--modality", "ct")
    assert not starred("hippocampus", "--model", "textseg-mini")
    assert starred("hippocampus", "--model", "SAT-Nano", "--modality", "mri")
    assert main(["terms", "liver", "--model", "textseg-mini", "--modality", "pet"]) == 2
    assert "not trained on PET" in capsys.readouterr().err
    # --resolve applies the same rule as segment
    assert main(["terms", "lt kidn", "--resolve", "--json", "--model", "textseg-mini"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)
    assert got["term"] == "left kidney" and got["concept"]["name"] == "Left kidney"


def test_cli_polish_quiet_overwrite_and_one_modality_list(tmp_path, capsys, bundled):
    import click

    from TextSegLib.cli.main import cli

    path, _ = _cropped_sample(tmp_path)
    out = tmp_path / "q.seg.nrrd"
    rc = main(["segment", str(path), "-p", "liver", "--model", "textseg-mini", "--modality", "ct", "--threads", "1",
               "-o", str(out), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == "" and cap.out.strip() == str(out)
    rc = main(["segment", str(path), "-p", "liver", "--model", "textseg-mini", "-o", str(out), "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    choices = set()
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        for p in getattr(cmd, "params", []):
            if p.name == "modality":
                choices.add(tuple(p.type.choices))
    assert choices == {("ct", "mri", "pet")}


def test_paired_structures_get_distinguishable_colours():
    from TextSegLib.engine.results import segment_colors

    tree = default_tree()
    left, right = tree.lookup("left kidney")[0], tree.lookup("right kidney")[0]
    a, b = segment_colors([left.name, right.name], [left.color, right.color])
    assert left.color == right.color  # Slicer's list gives both kidneys one colour ...
    assert max(abs(x - y) for x, y in zip(a, b)) >= 0.12  # ... the segments do not look alike
    assert a == tuple(left.color)
