"""``textseg refine IMAGE MASK``: edit a mask with clicks and boxes."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..errors import OutputPathError


def _numbers(text: str, n: int, option: str) -> list[float]:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of numbers.", param_hint=option) from None
    if len(values) != n:
        raise click.BadParameter(f"{text!r} has {len(values)} numbers; {n} are needed.", param_hint=option)
    return values


def label_names(mask: Path) -> dict[int, str]:
    """Label value -> segment name, from a ``.seg.nrrd`` header or the ``<stem>_labels.csv`` that
    ``segment --nifti`` writes beside a NIfTI label map (``{}`` when neither says)."""
    import csv
    import re

    name = mask.name
    out: dict[int, str] = {}
    if name.lower().endswith(".nrrd"):
        try:
            with open(mask, "rb") as f:
                head = f.read(1 << 20).split(b"\n\n", 1)[0].decode("latin-1")
        except OSError:
            return {}
        fields = dict(re.findall(r"^(Segment\d+_(?:Name|LabelValue)):=(.*)$", head, re.M))
        for key, seg_name in fields.items():
            if key.endswith("_Name"):
                value = fields.get(key[: -len("Name")] + "LabelValue", "")
                if value.strip().isdigit():
                    out[int(value)] = seg_name.strip()
        return out
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(ext):
            table = mask.with_name(name[: -len(ext)] + "_labels.csv")
            break
    else:
        return {}
    try:
        with open(table, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("file", name) == name and str(row.get("label", "")).strip().isdigit():
                    out[int(row["label"])] = row.get("name", "")
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return out


def summary_line(output: Path, label: int | None, names: dict[int, str], before: int, after: int,
                 changed: int, engine: str, seconds: float) -> str:
    """One readable line saying what the refinement did."""
    what = "the mask" if label is None else f"label {label}" + (f" ({names[label]})" if label in names else "")
    return (f"Refined {what} with {engine} in {seconds:.1f} s: {before:,} -> {after:,} voxels "
            f"({changed:,} changed); wrote {output}")


@click.command("refine")
@click.argument("image", type=click.Path(dir_okay=True, path_type=Path))
@click.argument("mask", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pos", "pos", multiple=True, metavar="X,Y,Z", help="Positive click (repeatable).")
@click.option("--neg", "neg", multiple=True, metavar="X,Y,Z", help="Negative click (repeatable).")
@click.option("--box", "box", multiple=True, metavar="X0,Y0,Z0,X1,Y1,Z1",
              help="Box corners (repeatable); flat along one axis = a box on one slice.")
@click.option("--ijk", is_flag=True, help="Coordinates are voxel indices (I,J,K), not RAS mm.")
@click.option("--label", type=int, default=None, help="Label value to edit in a multi-label MASK.")
@click.option("--roi-margin", type=click.FloatRange(min=1.0), default=None,
              help="Fixed ROI margin around clicks (mm). Default: sized to the structure, growing with "
                   "the click's depth (up to 150 mm).")
@click.option("--engine", type=click.Choice(["builtin", "nninteractive"]), default="builtin", show_default=True,
              help="Refinement engine (nnInteractive weights are non-commercial, CC BY-NC-SA 4.0).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output label file (.nii.gz, .nrrd).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (never MASK itself).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts).")
def command(image: Path, mask: Path, pos: tuple[str, ...], neg: tuple[str, ...], box: tuple[str, ...],
            ijk: bool, label: int | None, roi_margin: float | None, engine: str, output: Path, overwrite: bool,
            as_json: bool = False) -> None:
    """Refine MASK (a label file on IMAGE's grid) and write the result to OUTPUT."""
    from ..refine import refine
    from ..refine.files import read_image, read_mask, write_labels

    positives = [_numbers(p, 3, "--pos") for p in pos]
    negatives = [_numbers(p, 3, "--neg") for p in neg]
    boxes = [np.reshape(_numbers(b, 6, "--box"), (2, 3)) for b in box]
    if not (positives or negatives or boxes):
        raise click.UsageError("Give at least one --pos, --neg or --box.")
    if output.resolve() == mask.resolve():
        raise OutputPathError(f"{output}: is the input mask.", "Write to a new file; TextSeg never overwrites inputs.")
    vol = read_image(image)
    names = label_names(mask)
    current, labels, ref_img = read_mask(mask, vol, label, names)
    res = refine(vol, current, positives, negatives, boxes, points_space="ijk" if ijk else "ras",
                 engine=engine, roi_margin_mm=roi_margin)
    if label is None:
        out = res.mask.astype(labels.dtype if labels.dtype.kind in "iu" else np.uint8)
    else:
        out = labels.copy()
        out[current & ~res.mask] = 0
        out[res.mask] = label
    write_labels(output, out, ref_img, overwrite=overwrite)
    changed = int(np.count_nonzero(current != res.mask))
    if not as_json:
        click.echo(summary_line(output, label, names, int(current.sum()), int(res.mask.sum()), changed,
                                res.info["engine"], res.info["seconds"]))
        return
    click.echo(json.dumps({
        "output": str(output), "changed_voxels": changed,
        "changed_box": None if res.changed_box is None else [list(res.changed_box[0]), list(res.changed_box[1])],
        "voxels_before": int(current.sum()), "voxels_after": int(res.mask.sum()),
        "engine": res.info["engine"], "seconds": round(res.info["seconds"], 3),
        "label": label, "label_name": names.get(label) if label is not None else None,
    }))
