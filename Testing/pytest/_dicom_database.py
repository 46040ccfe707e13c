"""A stand-in for Slicer's ``slicer.dicomDatabase`` (a CTK ``ctkDICOMDatabase``; slicer-core has none).

Faithful to ``commontk/CTK Libs/DICOM/Core/ctkDICOMDatabase.h``, the part the module calls:

* ``insert(filePath, storeFile=True, generateThumbnail=True, createHierarchy=True,
  destinationDirectoryName="")``, the ``Q_INVOKABLE`` file overload with its defaults. With
  ``storeFile`` a database on disk copies the file under its own ``dicom`` folder (so the
  caller may delete its file afterwards); the indexed instance is then findable by UID.
* ``fileForInstance(sopInstanceUID)`` -> path, ``""`` when unknown.
* ``isOpen``: a ``Q_PROPERTY`` (PythonQt exposes it as an attribute, not a method).

Each ``insert`` call is recorded with its arguments, so a test can check the module used the
same call as Slicer's DICOMSegmentationPlugin (``slicer.dicomDatabase.insert(segFilePath)``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pydicom


class StandInDICOMDatabase:
    def __init__(self, folder: str | Path, files_by_uid: dict[str, str] | None = None) -> None:
        self.databaseDirectory = str(folder)  # noqa: N815 (CTK's property name)
        self.isOpen = True  # noqa: N815
        self.by_uid: dict[str, str] = dict(files_by_uid or {})
        self.series: dict[str, set[str]] = {}
        self.inserted: list[tuple] = []

    def fileForInstance(self, sopInstanceUID: str) -> str:  # noqa: N802, N803 (CTK's names)
        return self.by_uid.get(str(sopInstanceUID), "")

    def insert(self, filePath: str, storeFile: bool = True, generateThumbnail: bool = True,  # noqa: N802, N803
               createHierarchy: bool = True, destinationDirectoryName: str = "") -> None:
        if not isinstance(filePath, str):
            raise TypeError("ctkDICOMDatabase.insert(QString filePath, ...): filePath must be a str")
        self.inserted.append((filePath, storeFile, generateThumbnail, createHierarchy, destinationDirectoryName))
        ds = pydicom.dcmread(filePath, stop_before_pixels=True)
        stored = filePath
        if storeFile:
            dest = Path(self.databaseDirectory) / "dicom" / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
            dest.mkdir(parents=True, exist_ok=True)
            stored = str(shutil.copyfile(filePath, dest / str(ds.SOPInstanceUID)))
        self.by_uid[str(ds.SOPInstanceUID)] = stored
        self.series.setdefault(str(ds.StudyInstanceUID), set()).add(str(ds.SeriesInstanceUID))
