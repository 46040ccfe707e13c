"""``textseg terms QUERY``: autocomplete anatomy terms from the knowledge tree."""
from __future__ import annotations

import json

import click

from .options import modality_option


@click.command("terms")
@click.argument("query", nargs=-1)
@click.option("--limit", "-n", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Number of suggestions.")
@modality_option("Rank and mark the terms the model was trained on for this modality.")
@click.option("--model", "model_name", default=None,
              help="Mark this model's trained terms (default: the model `textseg segment` would use).")
@click.option("--vocabulary", "vocab_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file with a model's terms, one per line (instead of --model).")
@click.option("--resolve", "do_resolve", is_flag=True,
              help="Resolve the text exactly as `textseg segment -p TEXT` would, instead of listing suggestions.")
@click.option("--all", "list_all", is_flag=True,
              help="List every structure the model was trained on (same as `textseg models terms`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(query: tuple[str, ...], limit: int, modality: str | None, model_name: str | None, vocab_file: str | None,
            do_resolve: bool, list_all: bool, as_json: bool) -> None:
    """Suggest coded anatomy terms for QUERY: "lt kidn", IVC, L1, "liver segment 4a".

    Each row shows the name that matched, the preferred name, its place in the tree and its
    codes; * marks terms the selected model was trained on (for --modality, or any modality)."""
    from ..errors import InputFileError
    from ..knowledge import suggest
    from ..knowledge.resolved import resolve_prompt
    from ..models.catalog import model_vocabulary
    from ..volume import normalize_modality

    text = " ".join(query)
    modality = normalize_modality(modality)
    if list_all:
        if vocab_file or text.strip():
            raise InputFileError("--all lists a model's terms: it takes no QUERY and no --vocabulary.",
                                 "Run `textseg terms --model M --all`, or drop --all to search.")
        from .models import echo_vocabulary

        echo_vocabulary(model_name, modality, as_json)
        return
    if vocab_file:
        try:
            with open(vocab_file, encoding="utf-8") as f:
                terms = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"Cannot read vocabulary file {vocab_file}: {exc}.",
                                 "Give a UTF-8 text file with one term per line.") from None
        label, by_mod, free_text = vocab_file, {m: terms for m in ("ct", "mri", "pet")}, True
    else:
        label, by_mod, free_text = model_vocabulary(model_name)
    if modality:
        check_known_modality(label, by_mod, modality)
    from ..knowledge.resolved import model_vocabulary_index

    vocabulary = by_mod.get(modality, []) if modality else sorted({t for v in by_mod.values() for t in v})
    marks = model_vocabulary_index(vocabulary, modality)[0]
    if do_resolve:
        r = resolve_prompt(text, modality=modality, model_terms=vocabulary, free_text_ok=free_text, model_name=label)
        if as_json:
            click.echo(json.dumps({**r.to_json(), "model": label,
                                   "concept": _concept_json(r.concept) if r.concept else None,
                                   "terminology": r.terminology, "color": r.color,
                                   "nearest": [_concept_json(c) for c in r.nearest]}, indent=2))
            return
        if r.concept is None:
            click.echo(f"{text!r}: free text (no coded structure); {label} encodes it as typed.")
        else:
            c = r.concept
            click.echo(f"{c.name}  [{' › '.join(c.path)}]  {c.code}")
            click.echo(f"  terminology: {r.terminology}")
            click.echo(f"  {label} is sent: {r.term!r}" + ("" if r.in_vocabulary else " (not a trained term)"))
        if r.nearest:
            click.echo("  trained terms near it: " + ", ".join(c.name for c in r.nearest))
        return
    rows = suggest(text, limit=limit, modality=modality, vocabulary=marks)
    if as_json:
        click.echo(json.dumps([{
            "matched": s.matched, "kind": s.kind, "score": s.score, "in_vocabulary": s.in_vocabulary,
            "model": label, **_concept_json(s.concept)} for s in rows], indent=2))
        return
    if not rows:
        click.echo(f"No matching terms. `textseg models terms {label}` lists the terms {label} was trained on.")
        return
    for s in rows:
        mark = "*" if s.in_vocabulary else " "
        shown = s.concept.name if s.matched.lower() == s.concept.name.lower() else f"{s.matched} → {s.concept.name}"
        click.echo(f"{mark} {shown:<48} {' › '.join(s.concept.path[:-1]) or '-':<40} {s.concept.code}")
    where = f" on {modality.upper()}" if modality else ""
    if label.lower() == "voxtell":
        from ..models.voxtell.text import bank_coverage

        hit, total = bank_coverage(vocabulary)
        click.echo(f"(* = in {label}'s embedding bank: {hit} of the tree's {total} concepts; "
                   "other text is encoded by its text encoder)")
        return
    if any(s.in_vocabulary for s in rows):
        click.echo(f"(* = trained term of {label}{where})")
    else:
        click.echo(f"(none of these is a trained term of {label}{where}; `textseg models terms {label}` lists them)")


def check_known_modality(label: str, by_mod: dict, modality: str) -> None:
    """A modality the model has no terms for is an error, before any listing or work."""
    from ..errors import ModalityError

    known = [m for m in ("ct", "mri", "pet") if by_mod.get(m)]
    if known and modality not in known:
        names = {"ct": "CT", "mri": "MRI", "pet": "PET"}
        raise ModalityError(f"{label} was not trained on {names[modality]} scans (it knows "
                            f"{', '.join(names[m] for m in known)}).",
                            "Pick another model with --model (textseg models list).")


def _concept_json(c) -> dict:
    return {"id": c.id, "name": c.name, "path": list(c.path), "code": c.code,
            "local_code": c.is_local_code, "code_source": c.code_source, "terminology": c.terminology,
            "color": list(c.color), "region": c.region, "modalities": list(c.modalities),
            "vocabularies": {k: list(v) for k, v in c.vocabularies.items()}}
