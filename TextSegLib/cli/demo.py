"""``textseg demo``: segment the bundled sample CT with the bundled model.

Writes ``demo.seg.nrrd`` (open it in 3D Slicer over the sample scan),
``demo_overlay.png`` (axial / coronal / sagittal overlays) and
``demo_volumes.csv`` (per-structure volume in mL) into ``--out``.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Sequence

import click
import numpy as np

#: structures the sample shows, plus one it does not (its 40 mm of upper abdomen have no kidney),
#: so the demo shows a "not found" answer too
DEMO_PROMPTS = ("liver", "spleen", "aorta", "left kidney")

#: (left, right, top, bottom) side labels of each view in radiological convention
VIEW_MARKERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


def _ras_array(volume) -> tuple[np.ndarray, np.ndarray]:
    """Array in RAS axis order (no interpolation) and its per-axis spacing."""
    from ..engine.resample import make_grid, reorient

    grid = make_grid(volume, None)
    return reorient(volume.array, grid), grid.spacing


def write_overlay_png(volume, masks: dict[str, np.ndarray], colors: dict[str, Sequence[float]],
                      path: Path, title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the segmented structures (radiological view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from ..engine.resample import make_grid, reorient

    img, sp = _ras_array(volume)
    grid = make_grid(volume, None)
    ras_masks = {k: reorient(m, grid) for k, m in masks.items()}
    union = np.zeros(img.shape, bool)
    for m in ras_masks.values():
        union |= m
    c = np.round(np.argwhere(union).mean(0)).astype(int) if union.any() else np.array(img.shape) // 2
    views = [  # (title, 2-D slicer of a RAS array, (column spacing, row spacing))
        ("axial", lambda a: a[::-1, ::-1, c[2]].T, (sp[0], sp[1])),
        ("coronal", lambda a: a[::-1, c[1], ::-1].T, (sp[0], sp[2])),
        ("sagittal", lambda a: a[c[0], ::-1, ::-1].T, (sp[1], sp[2])),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 5), dpi=100)
    for ax, (name, cut, (sx, sy)) in zip(axes, views):
        sl = cut(img)
        extent = (0, sl.shape[1] * sx, sl.shape[0] * sy, 0)
        ax.imshow(sl, cmap="gray", vmin=-160, vmax=240, extent=extent, interpolation="nearest")
        for k, m in ras_masks.items():
            ms = cut(m)
            if ms.any():
                ax.imshow(np.ma.masked_where(~ms, ms), cmap=ListedColormap([colors[k]]), alpha=0.45,
                          extent=extent, interpolation="nearest")
        ax.set_title(name, pad=16)
        ax.axis("off")
        left, right, top, bottom = VIEW_MARKERS[name]  # sides inside the image, top/bottom just outside
        style = dict(transform=ax.transAxes, fontsize=11, fontweight="bold")
        ax.text(0.02, 0.5, left, ha="left", va="center", color="yellow", **style)
        ax.text(0.98, 0.5, right, ha="right", va="center", color="yellow", **style)
        ax.text(0.5, 1.01, top, ha="center", va="bottom", color="darkorange", **style)
        ax.text(0.5, -0.01, bottom, ha="center", va="top", color="darkorange", **style)
    fig.legend(handles=[Patch(color=colors[k], label=k) for k in masks], loc="lower center",
               ncol=len(masks), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return path


def default_out_dir(overwrite: bool, base: str = "textseg-demo") -> Path:
    """``textseg-demo``, or the first free ``textseg-demo-N``, so an earlier demo's files
    (which the user may have opened or edited) are never overwritten by a plain rerun."""
    first = Path(base)
    if overwrite or not first.exists() or not any(first.iterdir()):
        return first
    n = 2
    while Path(f"{base}-{n}").exists() and any(Path(f"{base}-{n}").iterdir()):
        n += 1
    return Path(f"{base}-{n}")


@click.command("demo")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the results [default: textseg-demo, or textseg-demo-2, -3, ... "
                   "when an earlier demo's results are there].")
@click.option("-p", "--prompt", "prompts", multiple=True,
              help="Structures to segment (repeatable; default: liver, spleen, kidneys, aorta).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False),
              help="A textseg-mini folder (default: the bundled one).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(0, 256),
              help="CPU threads for torch (0 = torch's default; 1 is fastest on a busy machine).")
@click.option("--overwrite", is_flag=True, help="Replace existing result files.")
def command(out_dir: str | None, prompts: tuple[str, ...], model_path: str | None, threads: int, overwrite: bool) -> None:
    """Segment the bundled sample CT with the bundled offline model (CPU, < 1 min)."""
    import SimpleITK as sitk

    from ..engine.results import to_segmentation
    from ..io import check_output_path, write_seg_nrrd
    from ..io.sitk_convert import from_sitk
    from ..knowledge.resolved import engine_resolution_args, resolve_prompts
    from ..measurements import format_table, measure
    from ..models.bundled.engine import load_bundled_engine
    from ..models.bundled.sample import sample_path
    from .segment import prompt_lines

    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir else default_out_dir(overwrite)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"demo{s}" for k, s in (("seg", ".seg.nrrd"), ("png", "_overlay.png"), ("csv", "_volumes.csv"))}
    for k in ("png", "csv"):
        check_output_path(paths[k], overwrite, formats={".png": "", ".csv": ""})
    check_output_path(paths["seg"], overwrite, formats={".seg.nrrd": ""})

    src = sample_path()
    volume = from_sitk(sitk.ReadImage(str(src)), "ct", "abdomen_ct_sample")
    engine = load_bundled_engine(model_path, device="cpu", threads=threads or None)
    resolved = resolve_prompts(list(prompts or DEMO_PROMPTS), modality="ct", **engine_resolution_args(engine, "ct"))
    info, warnings = prompt_lines(resolved)
    for line in info:
        click.echo(line, err=True)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"Segmenting {src.name} ({volume.shape[0]}×{volume.shape[1]}×{volume.shape[2]} voxels) "
               f"with {engine.name}: {', '.join(p.name for p in resolved)} ...", err=True)
    result = engine.segment(volume, resolved, modality="ct")

    seg = to_segmentation(volume, result, meta={"model": engine.name})
    write_seg_nrrd(seg, paths["seg"], overwrite)
    rows = [measure(result.masks[p.text], volume, name=p.name, found=result.is_found(p.text),
                    reason=result.reasons.get(p.text, "")) for p in resolved]
    with paths["csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["structure", "found", "voxels", "volume_ml", "mean_hu", "reason"])
        for r in rows:
            w.writerow([r.name, "yes" if r.found else "no", r.voxels, f"{r.volume_ml:.2f}",
                        "" if r.mean is None else f"{r.mean:.1f}", r.reason])
    write_overlay_png(volume, {s.name: s.mask for s in seg}, {s.name: s.color for s in seg}, paths["png"],
                      f"{engine.name} on {src.name} (held-out patient)")

    for line in format_table(rows, "HU"):
        click.echo(line)
    click.echo(f"Done in {time.perf_counter() - t0:.1f} s. The scan covers only "
               f"{volume.shape[2] * volume.spacing[2]:.0f} mm of the upper abdomen, so volumes are partial.")
    click.echo(f"Input scan:      {src}")
    click.echo(f"Segmentation:    {paths['seg'].resolve()}  (load it in 3D Slicer over the input scan)")
    click.echo(f"Overlay image:   {paths['png'].resolve()}")
    click.echo(f"Volumes table:   {paths['csv'].resolve()}")
