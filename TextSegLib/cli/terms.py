"""``textseg terms QUERY``: autocomplete anatomy terms from the knowledge tree."""
from __future__ import annotations

import json

import click


@click.command("terms")
@click.argument("query", nargs=-1)
@click.option("--limit", "-n", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Number of suggestions.")
@click.option("--modality", type=click.Choice(["ct", "mri", "mr", "pet", "pt"], case_sensitive=False), default=None,
              help="Rank and mark terms the model knows for this modality.")
@click.option("--vocabulary", "vocab_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file with the model's terms, one per line (default: SAT's vocabulary).")
@click.option("--resolve", "do_resolve", is_flag=True, help="Resolve the whole text to one coded concept instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(query: tuple[str, ...], limit: int, modality: str | None, vocab_file: str | None,
            do_resolve: bool, as_json: bool) -> None:
    """Suggest coded anatomy terms for QUERY: "lt kidn", IVC, L1, "liver segment 4a".

    Each row shows the name that matched, the preferred name, its place in the tree and its
    codes; * marks terms the model knows (SAT's vocabulary unless --vocabulary is given)."""
    from ..errors import InputFileError
    from ..knowledge import resolve, suggest

    text = " ".join(query)
    vocabulary = None
    if vocab_file:
        try:
            with open(vocab_file, encoding="utf-8") as f:
                vocabulary = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"Cannot read vocabulary file {vocab_file}: {exc}.",
                                 "Give a UTF-8 text file with one term per line.") from None
    from ..volume import normalize_modality

    modality = normalize_modality(modality)
    if do_resolve:
        r = resolve(text, modality=modality, vocabulary=vocabulary)
        if as_json:
            click.echo(json.dumps({
                "text": r.text, "concept": _concept_json(r.concept) if r.concept else None,
                "terminology": r.terminology, "color": r.color, "in_vocabulary": r.in_vocabulary,
                "nearest": [_concept_json(c) for c in r.nearest]}, indent=2))
            return
        if r.concept is None:
            click.echo(f"{text!r}: no matching term.")
        else:
            c = r.concept
            click.echo(f"{c.name}  [{' › '.join(c.path)}]  {c.code}")
            click.echo(f"  terminology: {r.terminology}")
            click.echo("  known to the model" if r.in_vocabulary else "  not a trained term")
        if r.nearest:
            click.echo("  did you mean: " + ", ".join(c.name for c in r.nearest))
        return
    rows = suggest(text, limit=limit, modality=modality, vocabulary=vocabulary)
    if as_json:
        click.echo(json.dumps([{
            "matched": s.matched, "kind": s.kind, "score": s.score, "in_vocabulary": s.in_vocabulary,
            **_concept_json(s.concept)} for s in rows], indent=2))
        return
    if not rows:
        click.echo("No matching terms.")
        return
    for s in rows:
        mark = "*" if s.in_vocabulary else " "
        shown = s.concept.name if s.matched.lower() == s.concept.name.lower() else f"{s.matched} → {s.concept.name}"
        click.echo(f"{mark} {shown:<48} {' › '.join(s.concept.path[:-1]) or '-':<40} {s.concept.code}")
    click.echo("(* = known to the model)")


def _concept_json(c) -> dict:
    return {"id": c.id, "name": c.name, "path": list(c.path), "code": c.code,
            "local_code": c.is_local_code, "code_source": c.code_source, "terminology": c.terminology,
            "color": list(c.color), "region": c.region, "modalities": list(c.modalities),
            "vocabularies": {k: list(v) for k, v in c.vocabularies.items()}}
