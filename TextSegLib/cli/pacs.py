"""``textseg pacs``: find, pull and push over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).

The server and credentials come from the options, the environment
(TEXTSEG_DICOMWEB_URL, TEXTSEG_DICOMWEB_TOKEN, TEXTSEG_DICOMWEB_USER) or
``~/.textseg/dicomweb.json``; see :mod:`TextSegLib.pacs.config`.
"""
from __future__ import annotations

import json

import click


def _client(ctx: click.Context):
    from ..pacs import PacsClient, resolve_settings

    o = ctx.obj["pacs"]
    return PacsClient(resolve_settings(o["url"], o["token"], o["user"], o["config"]))


def _show(rows: list[dict], keys: list[str], as_json: bool) -> None:
    from ..pacs.client import series_table

    click.echo(json.dumps(rows, indent=2) if as_json else series_table(rows, keys))


@click.group("pacs")
@click.option("--url", "--dicomweb", "url", metavar="URL", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web.")
@click.option("--token", envvar="TEXTSEG_DICOMWEB_TOKEN", help="Bearer token (prefer TEXTSEG_DICOMWEB_TOKEN).")
@click.option("--user", envvar="TEXTSEG_DICOMWEB_USER", help="user:password for HTTP Basic (prefer the env var).")
@click.option("--config", type=click.Path(dir_okay=False), help="Config file (default ~/.textseg/dicomweb.json).")
@click.pass_context
def command(ctx: click.Context, url: str | None, token: str | None, user: str | None, config: str | None) -> None:
    """Find studies and series, pull a series, push a DICOM SEG (DICOMweb)."""
    ctx.ensure_object(dict)
    ctx.obj["pacs"] = {"url": url, "token": token, "user": user, "config": config}


@command.command("studies")
@click.option("--patient", help="Patient ID.")
@click.option("--dicom-modality", "modality", help="DICOM modality in the study, e.g. CT, MR.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def studies(ctx, patient, modality, limit, as_json) -> None:
    """List studies (QIDO-RS)."""
    rows = _client(ctx).find_studies(patient_id=patient, modality=modality, limit=limit)
    _show(rows, ["StudyInstanceUID", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy"], as_json)


@command.command("series")
@click.option("--study", help="Study Instance UID.")
@click.option("--dicom-modality", "modality", help="DICOM modality of the series, e.g. CT, MR, SEG.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def series(ctx, study, modality, limit, as_json) -> None:
    """List series (QIDO-RS)."""
    rows = _client(ctx).find_series(study_uid=study, modality=modality, limit=limit)
    _show(rows, ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                 "NumberOfSeriesRelatedInstances"], as_json)


@command.command("pull")
@click.argument("series_uid")
@click.option("--study", help="Study Instance UID (found by QIDO-RS when omitted).")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache folder (default ~/.textseg/dicomweb-cache).")
@click.option("--refresh", is_flag=True, help="Download again even if the cache holds the series.")
@click.pass_context
def pull(ctx, series_uid, study, cache, refresh) -> None:
    """Download a series into the local cache (WADO-RS); prints its folder."""
    click.echo(str(_client(ctx).pull_series(series_uid, study_uid=study, cache=cache, refresh=refresh)))


@command.command("push")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--uids", is_flag=True, help="Also print each stored SOP Instance UID.")
@click.pass_context
def push(ctx, files, uids) -> None:
    """Store DICOM files or folders, e.g. a TextSeg DICOM SEG, on the server (STOW-RS)."""
    client = _client(ctx)
    accepted = client.push(files)
    if uids:
        for uid in accepted:
            click.echo(uid)
    click.echo(f"{len(accepted)} instance(s) stored on {client.settings.url}.")
