"""The bundled demo scan: TotalSegmentator's CT DICOM series (Apache-2.0),
the held-out patient of textseg-mini (never used for training), stored as
``Resources/samples/abdomen_ct_sample.nii.gz``.

Derivation (``build_sample``): read the 20-slice series, keep geometry and HU,
and set voxels below -900 HU to -1000 HU (air noise; this halves the file and
does not change the model's input, whose window starts at -1000 HU).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...resources import resource_path

SAMPLE_NAME = "abdomen_ct_sample.nii.gz"


def sample_path() -> Path:
    """Path of the shipped demo scan."""
    return resource_path("samples", SAMPLE_NAME)


def build_sample(dicom_dir: str | Path, out: str | Path) -> Path:
    """Write the demo scan from the DICOM series folder (see module docstring)."""
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(dicom_dir)))
    img = r.Execute()
    a = sitk.GetArrayFromImage(img).astype(np.int16)
    a[a < -900] = -1000
    o = sitk.GetImageFromArray(a)
    o.CopyInformation(img)
    w = sitk.ImageFileWriter()
    w.SetFileName(str(out))
    w.SetUseCompression(True)
    w.SetCompressionLevel(9)
    w.Execute(o)
    return Path(out)
