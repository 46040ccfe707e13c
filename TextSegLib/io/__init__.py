"""Volumes and segmentations from and to files (NIfTI, NRRD, MHA, DICOM, .seg.nrrd).

* :func:`read_volume` (file or DICOM folder) / :func:`write_volume` (.nii, .nii.gz, .nrrd, .mha)
* :func:`to_sitk` / :func:`from_sitk` (LPS inside ITK, RAS in :class:`~TextSegLib.volume.Volume`)
* :func:`guess_modality` -> ``(modality, reason)``
* :func:`list_series` / :func:`read_dicom_series`; DICOM identifiers and the sorted
  file list land in ``Volume.meta`` (for DICOM SEG export)
* :func:`write_seg_nrrd` / :func:`read_seg_nrrd` (Slicer .seg.nrrd), :func:`write_nifti_labels`
* :func:`write_dicom_seg` / :func:`read_dicom_seg` (DICOM SEG, extra ``dicom``);
  :func:`read_segmentation` reads either kind by content
* :func:`check_output_path`: fail before heavy work if an output cannot be written

Every failure raises a :class:`~TextSegLib.errors.TextSegError` subclass.
"""
from .dicom import SeriesInfo, list_series, read_dicom_series
from .dicomseg import write_dicom_seg
from .dicomseg_read import read_dicom_seg, read_segmentation
from .modality import guess_modality
from .segfiles import read_seg_nrrd, write_nifti_labels, write_seg_nrrd
from .sitk_convert import from_sitk, to_sitk
from .volumes import check_output_path, read_volume, write_volume

__all__ = [
    "SeriesInfo", "check_output_path", "from_sitk", "guess_modality", "list_series",
    "read_dicom_seg", "read_dicom_series", "read_seg_nrrd", "read_segmentation", "read_volume", "to_sitk",
    "write_dicom_seg", "write_nifti_labels", "write_seg_nrrd", "write_volume",
]
