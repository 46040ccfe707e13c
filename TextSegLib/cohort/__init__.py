"""Cohort runs: the same prompts over many scans, resumable, measured, with a QC report.

>>> from TextSegLib.cohort import BatchConfig, run_batch
>>> summary = run_batch(BatchConfig("scans/", "run1", prompts=["liver", "spleen"]))

Modules: :mod:`.inputs` (cases from a folder or CSV), :mod:`.manifest` (the JSON-lines
manifest, the source of truth), :mod:`.plan` (prompts resolved once, model identity),
:mod:`.worker` (one case), :mod:`.outputs` (formats, the atomic case folder),
:mod:`.tables` and :mod:`.report` (measurements and QC page), :mod:`.backends` (inline,
local processes), :mod:`.ray` (a Ray cluster), :mod:`.detached` (start / watch a run
from another program, e.g. the Slicer module).
"""
from .inputs import CaseSpec, load_cases
from .runner import BatchConfig, BatchSummary, finalize, run_batch
from .worker import EngineSpec

__all__ = ["BatchConfig", "BatchSummary", "CaseSpec", "EngineSpec", "finalize", "load_cases", "run_batch"]
