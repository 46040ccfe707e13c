"""``textseg batch INPUT -o RUN -p liver -p spleen``: a cohort run (see :mod:`TextSegLib.cohort`)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import modality_option

from ..errors import InputFileError


def read_prompts_file(path: str) -> list[str]:
    """Prompts from a text file: one per line (commas split too); ``#`` starts a comment."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: cannot read the prompts file ({exc}).", "Give a UTF-8 text file.") from None
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


@click.command("batch")
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--out", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder (created; re-run with the same folder to resume).")
@click.option("-p", "--prompt", "prompts", multiple=True, help="Structure to segment (repeatable).")
@click.option("--prompts-file", type=click.Path(exists=True, dir_okay=False), help="Prompts, one per line.")
@click.option("--model", "model_name", help="Catalog or registered model (default: see `textseg models list`).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="A model folder to use directly.")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:N, mps or cpu.")
@click.option("--precision", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@modality_option("ct, mri or pet for every case (default: the manifest's column, the DICOM tag, or guessed "
                 "per case).")
@click.option("-f", "--format", "formats", multiple=True, help="seg.nrrd, nifti or dicomseg (repeatable; "
                                                               "default: seg.nrrd and nifti).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 512),
              help="Worker processes (or Ray actors), each holding the model once.")
@click.option("--threads", type=click.IntRange(1, 512), help="Torch threads per worker (default: cores / workers).")
@click.option("--ray", "ray_address", help="Run on a Ray cluster: 'auto' (the running one), 'local' "
                                           "(start one here) or its address.")
@click.option("--gpus-per-worker", type=float, help="GPUs each Ray actor asks for (default: 1 when the "
                                                    "cluster has GPUs and --device is not cpu, else 0).")
@click.option("--retry-failed", is_flag=True, help="Run the cases that failed before again.")
@click.option("--force", is_flag=True, help="Redo every case (replacing its outputs).")
@click.option("--verify", type=click.Choice(["size", "checksum"]), default="size", show_default=True,
              help="How finished cases are checked before they are skipped.")
@click.option("--no-thumbnails", is_flag=True, help="No overlay pictures (faster; the report has no images).")
@click.option("--dicomweb", "dicomweb", metavar="URL",
              help="DICOMweb server of the cases: SOURCE is then a .txt list of SeriesInstanceUIDs, or a CSV "
                   "whose path column says dicomweb:UID (credentials: TEXTSEG_DICOMWEB_TOKEN / _USER or the config file).")
@click.option("--skip-unknown", is_flag=True,
              help="Segment the prompts the model knows and report the others as skipped (exit code 4), "
                   "instead of refusing the run.")
@click.option("--seg-type", "seg_type", type=click.Choice(["BINARY", "LABELMAP"], case_sensitive=False),
              default="BINARY", show_default=True, help="DICOM SEG type (-f dicomseg / --push).")
@click.option("--push", is_flag=True,
              help="Store each case's DICOM SEG on the DICOMweb server (--dicomweb, TEXTSEG_DICOMWEB_URL or the "
                   "config file) before the case counts as done; adds -f dicomseg.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def command(source, run_dir, prompts, prompts_file, model_name, model_path, device, precision, modality, formats,
            workers, threads, ray_address, gpus_per_worker, retry_failed, force, verify, no_thumbnails, dicomweb,
            skip_unknown, seg_type, push, quiet) -> None:
    """Segment every scan of SOURCE (a folder of NIfTI/NRRD files and DICOM series folders,
    or a CSV manifest with case_id,path[,modality,prompts,roi]) into the run folder.

    Finished cases are skipped on a re-run; a failed case is recorded and the run goes on.
    \b
    Exit codes: 0 all done; 1 some cases failed; 2 refused before any case
    (one line says why); 4 done, but --skip-unknown skipped some prompts;
    130 stopped before the end."""
    from ..cohort import BatchConfig, EngineSpec, run_batch
    from ..cohort.outputs import DEFAULT_FORMATS

    texts = list(prompts) + (read_prompts_file(prompts_file) if prompts_file else [])
    cfg = BatchConfig(source, run_dir, texts, EngineSpec(model_name, model_path, device, precision, threads),
                      modality=modality or "", formats=list(formats) or list(DEFAULT_FORMATS), workers=workers,
                      ray=ray_address, gpus_per_worker=gpus_per_worker, retry_failed=retry_failed, force=force,
                      verify=verify, thumbnails=not no_thumbnails, progress=not quiet, dicomweb=dicomweb,
                      skip_unknown=skip_unknown, seg_type=seg_type.upper(), push=push)
    summary = run_batch(cfg, echo=(lambda s: None) if quiet else (lambda s: click.echo(s, err=True)))
    for line in summary.lines():
        click.echo(line, err=not line.split(":")[0].endswith((".html", ".csv", ".parquet", ".jsonl")))
    if summary.exit_code:
        sys.exit(summary.exit_code)
