"""DICOM SEG output and DICOMweb input/push for ``textseg segment`` (kept apart from segment.py).

``textseg segment --dicomweb URL --series UID -p liver -o liver.dcm --push``
pulls the series from the PACS into the local cache, segments it, writes a
DICOM SEG (``-o`` ending in ``.dcm``; beside a ``.seg.nrrd`` output otherwise)
and stores it back with STOW-RS.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import click

from ..errors import InputFileError


def dicomweb_options(f: Callable) -> Callable:
    """The DICOM SEG / DICOMweb options of ``textseg segment``."""
    options = [
        click.option("--dicomweb", "dicomweb_url", metavar="URL",
                     help="Pull the series from this DICOMweb server (or TEXTSEG_DICOMWEB_URL / config file)."),
        click.option("--series", "dicomweb_series", metavar="UID", help="Series Instance UID to pull and segment."),
        click.option("--push", "dicomweb_push", is_flag=True, help="Store the DICOM SEG back on the DICOMweb server."),
        click.option("--seg-type", "seg_type", type=click.Choice(["BINARY", "LABELMAP"], case_sensitive=False),
                     default="BINARY", show_default=True, help="DICOM SEG type for .dcm output / --push."),
        click.option("--dicomweb-token", envvar="TEXTSEG_DICOMWEB_TOKEN", help="Bearer token (prefer the env var)."),
        click.option("--dicomweb-user", envvar="TEXTSEG_DICOMWEB_USER", help="user:password for HTTP Basic auth."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def is_dicom_output(path: str | Path) -> bool:
    return str(path).lower().endswith(".dcm")


def _client(opts: dict):
    from ..pacs import PacsClient, resolve_settings

    return PacsClient(resolve_settings(opts.get("dicomweb_url"), opts.get("dicomweb_token"), opts.get("dicomweb_user")))


def resolve_input(image: str | None, opts: dict) -> str:
    """The local image to read: IMAGE, or the ``--series`` pulled into the DICOMweb cache."""
    series = opts.get("dicomweb_series")
    if series and image:
        raise InputFileError("give either IMAGE or --series (from --dicomweb), not both.")
    if not series:
        if opts.get("dicomweb_url"):
            raise InputFileError("--dicomweb needs --series UID (the series to segment).",
                                 "Find it with: textseg pacs series --study UID.")
        if not image:
            raise InputFileError("no image given.", "Pass IMAGE (a file or DICOM folder) or --dicomweb URL --series UID.")
        return image
    folder = _client(opts).pull_series(series)
    click.echo(f"Pulled series {series} into {folder}", err=True)
    return str(folder)


def precheck(volume, out: Path, opts: dict) -> None:
    """Before the heavy work: a DICOM SEG output needs a DICOM source series with UIDs (every
    empty one of every file is named in one line)."""
    if is_dicom_output(out) or opts.get("dicomweb_push"):
        from ..io.dicom_uids import check_uids
        from ..io.dicomseg import source_files

        check_uids(source_files(volume), volume.meta.get("source") or "the source series")


def weights_digest(engine, model_name: str | None = None, model_path: str | None = None) -> str:
    """sha256 over the model's weight files (name + content hash), or '' when they are not local."""
    folder = None
    try:
        from ..models import catalog

        if model_path:
            folder = Path(model_path)
        elif getattr(engine, "name", "") == "textseg-mini":
            from ..models.bundled.engine import model_dir

            folder = model_dir()
        else:
            folder = catalog.model_path(model_name or engine.name)
    except Exception:  # remote engines, unregistered models: nothing local to hash
        return ""
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.is_file() and p.suffix in (".pt", ".pth", ".safetensors", ".bin", ".npz"))
    if not files:
        return ""
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder)}:{catalog.file_sha256(p)}\n".encode())
    return h.hexdigest()


def finish(seg, volume, out: Path, overwrite: bool, engine, opts: dict,
           model_name: str | None = None, model_path: str | None = None) -> list[Path]:
    """Write the DICOM SEG (``.dcm`` output, or beside the output for ``--push``) and push it.
    Each segment's ``meta['prompt']`` (set by ``to_segmentation``) goes into the SEG."""
    push = bool(opts.get("dicomweb_push"))
    if not is_dicom_output(out) and not push:
        return []
    from ..io.dicomseg import write_dicom_seg

    seg.meta.setdefault("model", getattr(engine, "name", "") or "")
    seg.meta.setdefault("weights_sha256", weights_digest(engine, model_name, model_path))
    target = out if is_dicom_output(out) else out.with_name(out.name.split(".")[0] + ".dcm")
    report = write_dicom_seg(seg, volume, target, segmentation_type=opts.get("seg_type") or "BINARY",
                             overwrite=overwrite)
    if report.empty_segments:
        click.echo(f"not found (not stored in the SEG): {', '.join(report.empty_segments)}", err=True)
    if push:
        from ..io.writing import after_output_set

        def push_it() -> None:
            accepted = _client(opts).push([report.path])
            click.echo(f"Pushed {report.path.name} ({len(accepted)} instance(s), series "
                       f"{report.series_instance_uid})", err=True)

        after_output_set(push_it)  # the SEG is pushed once it is on disk under its own name
    return [report.path]
