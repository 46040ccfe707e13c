"""Options shared by several subcommands, so each is spelled and checked one way."""
from __future__ import annotations

import click

#: the one modality choice list of every command (aliases such as "mr" are normalised later)
MODALITIES = ("ct", "mri", "pet")


def modality_option(help: str = "ct, mri or pet (default: from DICOM or guessed from intensities)."):
    """``--modality`` with the same choices everywhere."""
    return click.option("--modality", type=click.Choice(MODALITIES, case_sensitive=False), default=None, help=help)


def threads_option(default: int = 0):
    """``--threads N``: CPU threads for torch (0 = torch's default)."""
    return click.option("--threads", type=click.IntRange(0, 512), default=default, show_default=True,
                        help="CPU threads for torch (0 = torch's default).")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))
