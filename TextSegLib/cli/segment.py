"""``textseg segment IMAGE -p liver -p "left kidney" -o out.seg.nrrd``."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import click

from ..errors import GeometryError
from . import dicom_outputs


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


def describe_prompts(prompts: Sequence[str], modality: str, vocabulary: list[str]) -> tuple[list[dict], list[str]]:
    """Name, terminology, colour and concept id per prompt (knowledge tree when available),
    plus warnings for prompts outside the model's vocabulary."""
    try:
        from ..knowledge import resolve  # type: ignore[attr-defined]
    except ImportError:
        resolve = None
    rng = random.Random(0)
    out, warnings = [], []
    for text in prompts:
        info = {"prompt": text, "name": text, "terminology": "", "color": None, "concept_id": None}
        if resolve is not None:
            try:
                res = resolve(text, modality, vocabulary=vocabulary or None)
                info["terminology"] = getattr(res, "terminology", "") or ""
                info["color"] = getattr(res, "color", None)
                concept = getattr(res, "concept", None)
                info["concept_id"] = getattr(concept, "id", None) if concept is not None else None
                if concept is not None and getattr(concept, "name", ""):
                    info["name"] = concept.name  # segments are named by the preferred term
                if vocabulary and getattr(res, "in_vocabulary", True) is False:
                    near = [getattr(c, "name", str(c)) for c in (getattr(res, "nearest", None) or [])][:3]
                    warnings.append(f"{text!r} is not a term this model was trained on"
                                    + (f"; nearest: {', '.join(near)}" if near else "") + ".")
            except Exception as exc:  # knowledge is optional decoration: never block segmenting
                warnings.append(f"{text!r}: no terminology ({type(exc).__name__}: {exc}).")
        if info["color"] is None:
            info["color"] = tuple(round(rng.uniform(0.2, 0.95), 3) for _ in range(3))
        out.append(info)
    return out, warnings


@click.command("segment")
@click.argument("image", type=click.Path(exists=True), required=False)
@click.option("-p", "--prompt", "prompts", multiple=True, required=True, help="Structure to segment (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .seg.nrrd (or .nii.gz, or .dcm for DICOM SEG).")
@click.option("--model", "model_name", help="Catalog or registered model (default: see `textseg models list`).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="A model folder to use directly.")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:N, mps or cpu.")
@click.option("--precision", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@click.option("--modality", help="ct, mri or pet (default: from DICOM or guessed from intensities).")
@click.option("--roi", help="Only segment inside this RAS box: R1,A1,S1,R2,A2,S2 (mm).")
@click.option("--nifti", is_flag=True, help="Also write a NIfTI label map + labels CSV next to the output.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--server", help="Run on a `textseg serve` server at this URL instead of locally.")
@click.option("--api-key", envvar="TEXTSEG_API_KEY", help="API key for --server (or set TEXTSEG_API_KEY).")
@dicom_outputs.dicomweb_options
def command(image: str, prompts: tuple[str, ...], output: str, model_name: str | None, model_path: str | None,
            device: str, precision: str, modality: str | None, roi: str | None, nifti: bool,
            overwrite: bool, quiet: bool, server: str | None = None, api_key: str | None = None,
            **dicomweb) -> None:
    """Segment the structures named by the prompts in IMAGE (file or DICOM folder)."""
    from ..io import check_output_path, read_volume, write_nifti_labels, write_seg_nrrd
    from ..models.catalog import load_engine
    from ..segmentation import Segment, Segmentation

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
    roi_box = _parse_roi(roi)

    volume = read_volume(image, modality=modality)
    dicom_outputs.precheck(volume, out, dicomweb)
    if not modality and volume.meta.get("modality_reason"):
        click.echo(f"Modality: {volume.modality} ({volume.meta['modality_reason']}); override with --modality.",
                   err=True)
    if server:
        from ..remote import RemoteEngine

        engine = RemoteEngine(server, api_key=api_key)
    else:
        engine = load_engine(model_name, model_path, device=device, precision=precision)
    texts = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
    described, warnings = describe_prompts(texts, volume.modality, engine.vocabulary(volume.modality))
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
        result = engine.segment(volume, texts, modality=volume.modality, roi_ras=roi_box, progress=progress)
    finally:
        if bar is not None:
            bar.close()

    seg = Segmentation(volume)
    for d in described:
        key = d["prompt"]
        seg.add(Segment(d["name"], result.masks[key], terminology=d["terminology"], color=d["color"],
                        concept_id=d["concept_id"]), on_conflict="rename")
    if dicom_outputs.is_dicom_output(out):
        written = []
    else:
        written = write_nifti_labels(seg, out, overwrite) if is_nifti_out else [write_seg_nrrd(seg, out, overwrite)]
    written += dicom_outputs.finish(seg, volume, out, overwrite, engine, described, dicomweb, model_name, model_path)
    if nifti_path is not None:
        written += write_nifti_labels(seg, nifti_path, overwrite)
    t = result.timings
    click.echo(f"{len(texts)} structure(s) in {t.get('total', 0):.1f} s "
               f"({result.info.get('tiles_run', '?')} of {result.info.get('tiles_total', '?')} tiles run) "
               f"with {engine.name} on {result.info.get('device', '?')}", err=True)
    for d in described:
        n = int(result.masks[d["prompt"]].sum())
        label = d["name"] if d["name"] == d["prompt"] else f"{d['name']} (\"{d['prompt']}\")"
        click.echo(f"  {label}: {n:,} voxels", err=True)
    for p in written:
        click.echo(str(p))
