"""``textseg demo``: segment the bundled sample CT with the bundled model.

Writes ``demo.seg.nrrd`` (open it in 3D Slicer over the sample scan),
``demo_overlay.png`` (three axial slices over the structures, colours that tell them apart) and
``demo_volumes.csv`` (per-structure volume in mL) into ``--out``.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
import click

from ..overlay import write_overlay_png

#: structures the sample shows, plus one it does not (its 40 mm of upper abdomen have no kidney),
#: so the demo shows a "not found" answer too
DEMO_PROMPTS = ("liver", "spleen", "aorta", "left kidney")

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
    from ..measurements import format_table, measure_result
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
    rows = measure_result(result, volume, resolved)
    with paths["csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["structure", "found", "voxels", "volume_ml", "mean_hu", "reason", "state", "presence_probability"])
        for r in rows:
            w.writerow([r.name, "yes" if r.found else "no", r.voxels, f"{r.volume_ml:.2f}",
                        "" if r.mean is None else f"{r.mean:.1f}", r.reason, r.presence_state,
                        "" if r.presence_probability is None else f"{r.presence_probability:.4f}"])
    write_overlay_png(volume, {s.name: s.mask for s in seg}, {s.name: s.color for s in seg}, paths["png"],
                      f"{engine.name} on {src.name} (held-out patient)", axial_only=True)

    for line in format_table(rows, "HU"):
        click.echo(line)
    click.echo(f"Done in {time.perf_counter() - t0:.1f} s. The scan covers only "
               f"{volume.shape[2] * volume.spacing[2]:.0f} mm of the upper abdomen, so volumes are partial.")
    click.echo(f"Input scan:      {src}")
    click.echo(f"Segmentation:    {paths['seg'].resolve()}  (load it in 3D Slicer over the input scan)")
    click.echo(f"Overlay image:   {paths['png'].resolve()}")
    click.echo(f"Volumes table:   {paths['csv'].resolve()}")
