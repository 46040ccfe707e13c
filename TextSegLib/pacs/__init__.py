"""PACS access over DICOMweb (extra ``dicom``: dicomweb-client).

* :func:`resolve_settings` -> :class:`PacsSettings` (URL + credentials from
  arguments, environment or ``~/.textseg/dicomweb.json``)
* :class:`PacsClient`: ``find_studies`` / ``find_series`` (QIDO-RS),
  ``pull_series`` into a local cache (WADO-RS), ``push`` (STOW-RS)
"""
from .client import PacsClient
from .config import PacsError, PacsSettings, resolve_settings

__all__ = ["PacsClient", "PacsError", "PacsSettings", "resolve_settings"]
