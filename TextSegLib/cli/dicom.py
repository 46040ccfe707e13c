"""``textseg dicom fix-uids IN OUT``: make a DICOM series usable as the source of a DICOM SEG."""
from __future__ import annotations

import click


@click.group("dicom")
def command() -> None:
    """DICOM helpers (a UID-complete copy of a series)."""


@command.command("fix-uids")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
def fix_uids_cmd(folder: str, out: str) -> None:
    """Copy the series in FOLDER to the new folder OUT with every empty UID filled in.

    A DICOM SEG must reference its source's study, series, instance, SOP class and frame of
    reference; anonymised exports (like the sample series in Testing/Data) often blank them.
    The same input always gets the same UIDs; UIDs already there are kept."""
    from ..io.dicom_uids import fix_uids

    r = fix_uids(folder, out)
    filled = ", ".join(f"{k} ({n})" for k, n in r["filled"].items()) or "nothing (every UID was there)"
    click.echo(f"Wrote {r['files']} file(s); filled {filled}.", err=True)
    click.echo(f"  study  {r['StudyInstanceUID']}", err=True)
    click.echo(f"  series {r['SeriesInstanceUID']}", err=True)
    click.echo(str(r["folder"]))
