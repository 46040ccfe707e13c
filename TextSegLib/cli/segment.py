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
from . import dicom_outputs, exitcodes
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


def resolve_or_skip(prompts: Sequence[str], skip_unknown: bool, modality: str, args: dict
                    ) -> tuple[list, dict[str, str]]:
    """``(resolved prompts, {skipped text: why})``. Without ``skip_unknown`` an unknown prompt
    refuses the whole run (the default, for scripts); with it, prompts the model cannot segment
    are set aside and the rest run. Ambiguous prompts are always refused: a guess is not a skip."""
    from ..knowledge.prompts import split_prompts
    from ..knowledge.resolved import UnknownTermError, resolve_prompts

    if not skip_unknown:
        return resolve_prompts(list(prompts), modality=modality, **args), {}
    texts: list[str] = []
    for item in prompts:
        texts += [t for t in split_prompts(item) if t not in texts]
    ok, skipped = [], {}
    for t in texts:
        try:
            resolve_prompts([t], modality=modality, **args)
            ok.append(t)
        except UnknownTermError as exc:
            skipped[t] = exc.message
    if not ok:  # nothing left to run: the refusal of the first one stands
        return resolve_prompts(texts[:1], modality=modality, **args), {}
    return resolve_prompts(ok, modality=modality, **args), skipped


def skipped_rows(skipped: dict[str, str]) -> list:
    """Table rows for prompts set aside by ``--skip-unknown``."""
    from ..measurements import Measurement

    return [Measurement(text, False, 0, 0.0, reason=f"skipped: {why}") for text, why in skipped.items()]


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
@click.option("--skip-unknown", is_flag=True,
              help="Segment the prompts the model knows and list the others as skipped (exit code 4), "
                   "instead of refusing the run.")
@dicom_outputs.dicomweb_options
@click.pass_context
def command(ctx: click.Context, image: str, prompts: tuple[str, ...], output: str, model_name: str | None,
            model_path: str | None, device: str, precision: str, modality: str | None, roi: str | None, nifti: bool,
            stats_path: str | None, threads: int, overwrite: bool, quiet: bool, server: str | None = None,
            api_key: str | None = None, skip_unknown: bool = False, **dicomweb) -> None:
    """Segment the structures named by the prompts in IMAGE (file or DICOM folder).

    \b
    Exit codes: 0 done; 2 refused (one line says why); 3 nothing found
    (the --stats table is still written, with the not-found rows);
    4 done, but --skip-unknown skipped some prompts; 130 interrupted."""
    from ..engine.results import to_segmentation
    from ..io import check_output_path, read_volume, write_nifti_labels, write_seg_nrrd
    from ..io.writing import output_set
    from ..knowledge.resolved import engine_resolution_args
    from ..measurements import format_table, measure_result
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
        say(f"Modality: {volume.modality.upper()}, guessed from the scan (--modality to override; "
            "`textseg info` says why).")
    if server:
        from ..remote import RemoteEngine

        engine = RemoteEngine(server, api_key=api_key)
    else:
        engine = load_engine(model_name, model_path, device=device, precision=precision)
    resolved, skipped = resolve_or_skip(prompts, skip_unknown, volume.modality,
                                        engine_resolution_args(engine, volume.modality))
    info, warnings = prompt_lines(resolved)
    warnings += [f"skipped {t!r}: {why}" for t, why in skipped.items()]
    for line in info:
        say(line)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)

    from .progress import StageProgress

    progress = None if quiet else StageProgress(engine.name)
    try:
        result = engine.segment(volume, resolved, modality=volume.modality, roi_ras=roi_box, progress=progress)
    finally:
        if progress is not None:
            progress.close()

    seg = to_segmentation(volume, result, meta={"model": engine.name})
    rows = measure_result(result, volume, resolved)
    rows += skipped_rows(skipped)
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
    asked = len(resolved) + len(skipped)
    say(f"{found} of {asked} structure(s) found" + (f" ({len(skipped)} skipped)" if skipped else "") + f" in {t.get('total', 0):.1f} s "
        f"({result.info.get('tiles_run', '?')} of {result.info.get('tiles_total', '?')} tiles run) "
        f"with {engine.name} on {result.info.get('device', '?')}")
    for line in format_table(rows, "HU" if volume.modality == "ct" else ""):
        say(line)
    for p in written:
        click.echo(str(p))
    if not found:
        ctx.exit(exitcodes.NOTHING_FOUND)
    if skipped:
        ctx.exit(exitcodes.SKIPPED)
