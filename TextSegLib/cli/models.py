"""``textseg models``: list, download, locate and register segmentation models."""
from __future__ import annotations

import json

import click

from .options import modality_option

_MOD_NAMES = {"ct": "CT", "mri": "MRI", "pet": "PET"}


@click.group("models")
def command() -> None:
    """Manage segmentation models (SAT-Nano, SAT-Pro, textseg-mini, your folders)."""


@command.command("list")
def list_cmd() -> None:
    """Show known models and whether they are ready to use."""
    from ..models.catalog import default_model_name, list_models

    default = default_model_name()
    rows = list_models()
    width = max(len(r["name"]) for r in rows) + 2
    for r in rows:
        mark = "*" if r["name"].lower() == default.lower() else " "
        click.echo(f"{mark} {r['name']:<{width}}{r['status']:<16}{r['path'] or r['description']}")
    click.echo("(* = used when --model is not given; set TEXTSEG_MODEL to change it)")


@command.command("pull")
@click.argument("name")
@click.option("--to", "dest", type=click.Path(file_okay=False), help="Download into this folder.")
@click.option("--yes", "accept", is_flag=True, help="Accept the weights' licence without asking.")
@click.option("--text-encoder", "text_encoder", is_flag=True,
              help="VoxTell: also download its Qwen3 text encoder (for prompts outside the embedding bank).")
def pull_cmd(name: str, dest: str | None, accept: bool, text_encoder: bool) -> None:
    """Download model NAME (needs internet and huggingface_hub)."""
    import sys

    from ..errors import ModelError
    from ..models.catalog import consented, download_plan, get_entry, pull, record_consent, register

    entry = get_entry(name)
    if entry.architecture == "voxtell":
        click.echo(entry.license, err=True)
        click.echo("It downloads:\n" + "\n".join(download_plan(entry, text_encoder)), err=True)
        if not consented(entry.name):
            if not accept and not (sys.stdin is not None and sys.stdin.isatty()
                                   and click.confirm("Accept this licence and download?", default=False, err=True)):
                raise ModelError(f"{entry.name} was not downloaded: its licence was not accepted.",
                                 f"Run `textseg models pull {entry.name} --yes` to accept it "
                                 "(asked once), or register a folder you have with `textseg models register`.")
            record_consent(entry.name, entry.license)
    folder = pull(name, dest, echo=lambda s: click.echo(s, err=True), text_encoder=text_encoder)
    if dest:
        register(name, folder)
    click.echo(str(folder))


@command.command("path")
@click.argument("name")
def path_cmd(name: str) -> None:
    """Print the folder that holds model NAME."""
    from ..models.catalog import model_path

    click.echo(str(model_path(name)))


@command.command("register")
@click.argument("name")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
def register_cmd(name: str, folder: str) -> None:
    """Use the model files in FOLDER as model NAME (e.g. a manual download)."""
    from ..models.catalog import register, textseg_home

    p = register(name, folder)
    click.echo(f"Registered {name} -> {p} (in {textseg_home() / 'models.json'})")


@command.command("unregister")
@click.argument("name")
def unregister_cmd(name: str) -> None:
    """Forget the folder registered as NAME (its files are not touched)."""
    from ..errors import ModelError
    from ..models.catalog import unregister

    if not unregister(name):
        raise ModelError(f"No folder is registered as {name!r}.", "See `textseg models list`.")
    click.echo(f"Unregistered {name}")


def vocabulary_rows(name: str | None, modality: str | None = None) -> tuple[str, bool, list[dict]]:
    """``(model name, free_text, rows)``: one row per trained structure and modality, with its
    preferred name, code and the model's own term (terms that name no coded structure get none)."""
    from ..knowledge.resolved import model_vocabulary_index
    from ..knowledge.text import normalize
    from ..knowledge.tree import default_tree
    from ..models.catalog import model_vocabulary
    from ..volume import normalize_modality
    from .terms import check_known_modality

    label, by_mod, free_text = model_vocabulary(name)
    modality = normalize_modality(modality)
    if modality:
        check_known_modality(label, by_mod, modality)
    tree = default_tree()
    rows: list[dict] = []
    for m in ([modality] if modality else [k for k in ("ct", "mri", "pet") if by_mod.get(k)]):
        terms = list(by_mod.get(m, []))
        _, table, inverse = model_vocabulary_index(terms, m, tree)
        coded = sorted(table.items(), key=lambda kv: tree.concepts[kv[0]].name.lower())
        rows += [{"modality": m, "name": tree.concepts[i].name, "code": tree.concepts[i].code, "term": t}
                 for i, t in coded]
        rows += [{"modality": m, "name": t, "code": "", "term": t} for t in sorted(terms)
                 if normalize(t) not in inverse]
    return label, free_text, rows


def echo_vocabulary(name: str | None, modality: str | None, as_json: bool) -> None:
    """Print a model's trained structures (the ``*`` terms of ``textseg terms``)."""
    label, free_text, rows = vocabulary_rows(name, modality)
    if as_json:
        click.echo(json.dumps({"model": label, "free_text": free_text, "terms": rows}, indent=1))
        return
    for m in dict.fromkeys(r["modality"] for r in rows):
        mine = [r for r in rows if r["modality"] == m]
        click.echo(f"{label} on {_MOD_NAMES.get(m, m)}: {len(mine)} trained structure(s)")
        w = max(len(r["name"]) for r in mine)
        for r in mine:
            click.echo(f"  {r['name']:<{w}}  {r['code'] or '(no code)'}")
    click.echo(f"Free text: {'encoded by its text tower' if free_text else 'refused (only these terms)'}.")


@command.command("terms")
@click.argument("name", required=False)
@modality_option("Only the terms trained for this modality.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def terms_cmd(name: str | None, modality: str | None, as_json: bool) -> None:
    """List the structures model NAME was trained on (default: the model `segment` uses)."""
    echo_vocabulary(name, modality, as_json)
