"""Data the in-Slicer self-test uses, found in the installed tree (not in a source checkout)."""
from __future__ import annotations

from pathlib import Path

from TextSegLib.errors import InputFileError


def sample_ct_path() -> Path:
    """The bundled sample CT, installed with TextSegLib's Resources/ beside the module."""
    from TextSegLib.resources import resource_path

    path = Path(resource_path("samples", "abdomen_ct_sample.nii.gz"))
    if not path.is_file():
        raise InputFileError(f"{path}: the sample CT is not installed.", "Reinstall the TextSeg extension.")
    return path
