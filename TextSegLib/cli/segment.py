"""``textseg segment IMAGE -p liver -p "left kidney" -o out.seg.nrrd``.

Prompts are resolved first (:mod:`TextSegLib.knowledge.resolved`), against the chosen model's
vocabulary and modality, before any model work: an ambiguous or unknown prompt stops here with
one line. The engine then receives each concept's own trained term.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import click

from ..errors import GeometryError, OutputPathError
from . import dicom_outputs
from .options import modality_option, set_threads, threads_option


def _parse_roi(text: str | None) -> tuple[list[float], list[float]] | None:
    if not text:
        return None
    try:
        v = [float(x) for x in text.replace(";", ",").split(",")]
    except ValueError:
        v = []
    if len(v) != 6:
        raise GeometryError(f"--roi {text!r} needs six numbers.", "Write R1,A1,S1,R2,A2,S2 in millimetres (RAS).")
    lo = [min(a, b) for a, b in zip(v[:3], v[3:])]
    hi = [max(a, b) for a, b in zip(v[:3], v[3:])]
    return lo, hi


def prompt_lines(prompts: Sequence) -> tuple[list[str], list[str]]:
    """``(info lines, warning lines)`` saying how each prompt was resolved."""
    info, warn = [], []
    for p in prompts:
        code = f" [{p.code}]" if p.code else ""
        if p.free_text:
            warn.append(f"{p.note}.")
        elif not p.in_vocabulary:
            near = ", ".join(c.name for c in p.nearest[:3])
            warn.append(f"{p.note}" + (f"; trained terms near it: {near}" if near else "") + ".")
        elif p.note:
            info.append(f"prompt {p.note}{code}")
    return info, warn


def write_stats(rows, path: Path, overwrite: bool) -> Path:
    """Measurements as CSV (or JSON for ``.json``), written atomically."""
    from ..io import check_output_path

    check_output_path(path, overwrite, formats={".csv": "", ".json": ""})
    flat = [r.row() for r in rows]
    if path.suffix.lower() == ".json":
        text = json.dumps(flat, indent=1)
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else ["name"])
        w.writeheader()
        w.writerows(flat)
        text = buf.getvalue()
    from ..io.volumes import write_atomically

    return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), path.suffix)


@click.command("segment")
@click.argument("image", type=click.Path(exists=True), required=False)
@click.option("-p", "--prompt", "prompts", multiple=True, required=True,
              help='Structure to segment (repeatable; "liver, spleen" is two prompts, "kidney, left" one).')
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .seg.nrrd (or .nii.gz, or .dcm for DICOM SEG).")
@click.option("--model", "model_name", help="Catalog or registered model (default: see `textseg models list`).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="A model folder to use directly.")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:N, mps or cpu.")
@click.option("--precision", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@modality_option()
@click.option("--roi", help="Only segment inside this RAS box: R1,A1,S1,R2,A2,S2 (mm).")
@click.option("--nifti", is_flag=True, help="Also write a NIfTI label map + labels CSV next to the output.")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False),
              help="Write per-structure measurements (volume, voxels, intensities, centroid, box) to a .csv or .json.")
@threads_option()
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--quiet", "-q", is_flag=True, help="Print only warnings, errors and the written paths.")
@click.option("--server", help="Run on a `textseg serve` server at this URL instead of locally.")
@click.option("--api-key", envvar="TEXTSEG_API_KEY", help="API key for --server (or set TEXTSEG_API_KEY).")
@dicom_outputs.dicomweb_options
def command(image: str, prompts: tuple[str, ...], output: str, model_name: str | None, model_path: str | None,
            device: str, precision: str, modality: str | None, roi: str | None, nifti: bool,
            stats_path: str | None, threads: int, overwrite: bool, quiet: bool, server: str | None = None,
            api_key: str | None = None, **dicomweb) -> None:
    """Segment the structures named by the prompts in IMAGE (file or DICOM folder)."""
    from ..engine.results import to_segmentation
    from ..io import check_output_path, read_volume, write_nifti_labels, write_seg_nrrd
    from ..io.writing import output_set
    from ..knowledge.resolved import engine_resolution_args, resolve_prompts
    from ..measurements import format_table, measure
    from ..models.catalog import load_engine

    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    image = dicom_outputs.resolve_input(image, dicomweb)
    out = Path(output)
    is_nifti_out = out.name.lower().endswith((".nii", ".nii.gz"))
    check_output_path(out, overwrite, formats={".seg.nrrd": "", ".nrrd": "", ".nii.gz": "", ".nii": "", ".dcm": ""})
    nifti_path = None
    if nifti and not is_nifti_out:
        nifti_path = out.with_name(out.name[: -len(".seg.nrrd")] if out.name.lower().endswith(".seg.nrrd")
                                   else out.stem).with_suffix("")
        nifti_path = nifti_path.with_name(nifti_path.name + ".nii.gz")
        check_output_path(nifti_path, overwrite, formats={".nii.gz": ""})
    stats = Path(stats_path) if stats_path else None
    if stats is not None:
        check_output_path(stats, overwrite, formats={".csv": "", ".json": ""})
        if stats.resolve() == out.resolve():
            raise OutputPathError(f"--stats {stats} is the segmentation output.", "Give the table its own file name.")
    roi_box = _parse_roi(roi)
    set_threads(threads)

    volume = read_volume(image, modality=modality)
    dicom_outputs.precheck(volume, out, dicomweb)
    if not modality and volume.meta.get("modality_reason"):
        say(f"Modality: {volume.modality} ({volume.meta['modality_reason']}); override with --modality.")
    if server:
        from ..remote import RemoteEngine

        engine = RemoteEngine(server, api_key=api_key)
    else:
        engine = load_engine(model_name, model_path, device=device, precision=precision)
    resolved = resolve_prompts(list(prompts), modality=volume.modality,
                               **engine_resolution_args(engine, volume.modality))
    info, warnings = prompt_lines(resolved)
    for line in info:
        say(line)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)

    bar = None
    if not quiet:
        from tqdm import tqdm

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal bar
            if stage != "tiles":
                return
            if bar is None:
                bar = tqdm(total=total, desc=f"{engine.name} tiles", unit="tile", leave=False)
            if done < bar.n:  # a new group of prompts starts over the tiles
                bar.reset(total)
            bar.n = done
            bar.refresh()
    else:
        progress = None  # type: ignore[assignment]
    try:
        result = engine.segment(volume, resolved, modality=volume.modality, roi_ras=roi_box, progress=progress)
    finally:
        if bar is not None:
            bar.close()

    seg = to_segmentation(volume, result, meta={"model": engine.name})
    rows = [measure(result.masks[p.text], volume, name=p.name, probability=result.probabilities.get(p.text),
                    found=result.is_found(p.text), reason=result.reasons.get(p.text, "")) for p in resolved]
    written = []
    with output_set():  # the files appear together; a re-run completes a set a kill cut short
        if len(seg):
            if not dicom_outputs.is_dicom_output(out):
                written = write_nifti_labels(seg, out, overwrite) if is_nifti_out else \
                    [write_seg_nrrd(seg, out, overwrite)]
            written += dicom_outputs.finish(seg, volume, out, overwrite, engine, dicomweb, model_name, model_path)
            if nifti_path is not None:
                written += write_nifti_labels(seg, nifti_path, overwrite)
        else:
            click.echo(f"warning: none of the {len(resolved)} structure(s) was found; {out} was not written.",
                       err=True)
        if stats is not None:
            written.append(write_stats(rows, stats, overwrite))
    t = result.timings
    found = sum(1 for p in resolved if result.is_found(p.text))
    say(f"{found} of {len(resolved)} structure(s) found in {t.get('total', 0):.1f} s "
        f"({result.info.get('tiles_run', '?')} of {result.info.get('tiles_total', '?')} tiles run) "
        f"with {engine.name} on {result.info.get('device', '?')}")
    for line in format_table(rows, "HU" if volume.modality == "ct" else ""):
        say(line)
    for p in written:
        click.echo(str(p))
