"""One exception hierarchy for everything TextSeg reports to a user.

Every error says *what* (file or field), *what is wrong* and *what to do*.
The CLI prints ``str(error)`` on one line and exits non-zero; ``--debug``
shows the traceback.
"""
from __future__ import annotations


class TextSegError(Exception):
    """Base class. ``hint`` is the 'what to do' part, appended to the message."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}".strip() if hint else message)


class InputFileError(TextSegError):
    """A file or folder the user gave cannot be read or is not what it claims."""


class GeometryError(TextSegError):
    """Spacing, direction or shape that cannot describe a scan."""


class VolumeTooLargeError(TextSegError):
    """The volume exceeds the configured voxel limit."""


class DicomSeriesError(InputFileError):
    """A DICOM folder with no usable series, several series, or uneven slices."""


class OutputPathError(TextSegError):
    """An output path cannot be written."""


class TerminologyError(TextSegError):
    """A prompt or term cannot be resolved."""


class ModalityError(TerminologyError):
    """The scan's modality is one the model was not trained on (or cannot be told)."""


class ModelError(TextSegError):
    """A model, checkpoint or catalog entry is missing or incompatible."""


class CheckpointError(ModelError):
    """A checkpoint does not match the model (missing, unexpected, wrong-shape keys)."""


class CancelledError(TextSegError):
    """The user cancelled a running job."""

    exit_code = 130


class RemoteError(TextSegError):
    """A remote server refused or failed a request."""
