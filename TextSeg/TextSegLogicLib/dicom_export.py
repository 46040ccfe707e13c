"""DICOM SEG export and "Send to PACS" for a segmentation node (TextSegLib does the writing).

The source series is found through the volume node's ``DICOM.instanceUIDs``
attribute (set by Slicer's DICOM import) and the DICOM database
(``slicer.dicomDatabase.fileForInstance``); tests and scripts may pass the
lookup themselves. Segments TextSeg made and nobody changed are
``AUTOMATIC``; refined or edited ones ``SEMIAUTOMATIC``; segments drawn by the
user ``MANUAL``.

Policy (docs/slicer-seams-dicom.md): these features need 3D Slicer 5.12 or later, which ships
highdicom 0.27 and pydicom 3; on 5.10 (pydicom 2.4.4, no highdicom) :func:`require_dicom` refuses
with one line and the panel disables them. Every SEG written here is inserted into Slicer's DICOM
database (``ctkDICOMDatabase.insert(filePath)``, as Slicer's own DICOMSegmentationPlugin does), so
the DICOM browser lists it beside its series.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from TextSegLib.io.dicomseg import DicomSegError, SegWriteReport, write_dicom_seg
from TextSegLib.segmentation import Segment, Segmentation

from . import mrml_io
from .mrml_io import TAG_CREATED_BY, TAG_DIGEST, TAG_PROMPT, segment_tag


def require_dicom() -> None:
    """Raise the one-line reason when this Slicer cannot write or read DICOM SEG (5.10)."""
    from .deps import dicom_unavailable

    reason = dicom_unavailable()
    if reason:
        raise DicomSegError(reason)


def slicer_database() -> Any:
    """``slicer.dicomDatabase`` when Slicer's DICOM database is open, else None."""
    try:
        import slicer
    except ImportError:
        return None
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or (hasattr(database, "isOpen") and not database.isOpen):
        return None
    return database


def add_to_database(path: str, database: Any = None) -> bool:
    """Insert a written DICOM SEG into Slicer's DICOM database (``database``: a ctkDICOMDatabase,
    default ``slicer.dicomDatabase``). ``insert(filePath)`` with CTK's defaults copies the file
    into the database folder, so the SEG stays listed when ``path`` is removed later. False when
    no database is open (scripts, tests without Slicer)."""
    database = database if database is not None else slicer_database()
    if database is None:
        return False
    database.insert(str(path))
    logging.info("TextSeg: added %s to the DICOM database", path)
    return True


def source_files(volume_node: Any, file_for_instance: Callable[[str], str] | None = None) -> list[str]:
    """The DICOM files of the series a volume node was loaded from."""
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        raise DicomSegError(f"{volume_node.GetName()}: was not loaded from DICOM, so a DICOM SEG cannot reference it.",
                            "Load the series through Slicer's DICOM module, or export .seg.nrrd instead.")
    if file_for_instance is None:
        import slicer

        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            raise DicomSegError("Slicer's DICOM database is not open.", "Open the DICOM module once, then export again.")
        file_for_instance = database.fileForInstance
    files = [file_for_instance(uid) for uid in uids]
    missing = sum(1 for f in files if not f)
    if missing:
        raise DicomSegError(f"{volume_node.GetName()}: {missing} of its {len(uids)} DICOM files are not in the database.",
                            "Import the series into the DICOM database again.")
    return files


def segmentation_from_node(logic: Any, volume_node: Any, segmentation_node: Any) -> Segmentation:
    """A TextSegLib Segmentation (masks on the volume's grid, names, codes, colours, prompts)."""
    volume = logic.volume(volume_node, "")
    out = Segmentation(volume)
    segmentation = segmentation_node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        s = segmentation.GetSegment(sid)
        mask = mrml_io.segment_array_ijk(logic.segmentations_logic, segmentation_node, sid, volume)
        meta: dict = {}
        if segment_tag(s, TAG_CREATED_BY) == "TextSeg":
            meta["prompt"] = segment_tag(s, TAG_PROMPT)
            unchanged = mrml_io.segment_digest(logic.segmentations_logic, segmentation_node, sid) == segment_tag(s, TAG_DIGEST)
            meta["algorithm_type"] = "AUTOMATIC" if unchanged else "SEMIAUTOMATIC"
        else:
            meta["algorithm_type"] = "MANUAL"
        term = s.GetTerminology() if hasattr(s, "GetTerminology") else ""
        out.add(Segment(s.GetName(), mask, terminology=term or "", color=tuple(s.GetColor()), meta=meta),
                on_conflict="rename")
    engine = getattr(logic, "loaded_engine", None)
    if engine is not None and getattr(engine, "name", ""):
        out.meta["model"] = engine.name
    return out


def export_dicom_seg(logic: Any, volume_node: Any, segmentation_node: Any, path: str, *,
                     segmentation_type: str = "BINARY", overwrite: bool = False,
                     file_for_instance: Callable[[str], str] | None = None, database: Any = None) -> SegWriteReport:
    """Write the segmentation node as a DICOM SEG referencing the volume's source series, and
    insert it into the DICOM database (``database``, default ``slicer.dicomDatabase``)."""
    require_dicom()
    files = source_files(volume_node, file_for_instance)
    seg = segmentation_from_node(logic, volume_node, segmentation_node)
    report = write_dicom_seg(seg, files, path, segmentation_type=segmentation_type, overwrite=overwrite)
    add_to_database(str(report.path), database)
    return report


def send_to_pacs(path: str, url: str, token: str | None = None, user: str | None = None) -> list[str]:
    """STOW-RS a written SEG to a DICOMweb server; returns the accepted SOP Instance UIDs."""
    from TextSegLib.pacs import PacsClient, resolve_settings

    return PacsClient(resolve_settings(url, token=token, user=user)).push([path])


def import_dicom_seg(logic: Any, path: str, volume_node: Any = None, name: str | None = None) -> Any:
    """Load a DICOM SEG (TextSeg's or any BINARY / LABELMAP SEG highdicom reads) as a new segmentation
    node: one segment per SEG segment with its name, terminology (codes, laterality, anatomic
    region) and recommended colour, and the prompt / algorithm type as segment tags. With
    ``volume_node`` (the scan it was made on) the masks land voxel-exact on that grid, under its
    transform and study; else on the grid the SEG's own frames span."""
    from pathlib import Path

    from TextSegLib.io import read_segmentation
    from TextSegLib.io.dicomseg_read import is_dicom_file

    if is_dicom_file(path):
        require_dicom()
    reference = logic.volume(volume_node, "") if volume_node is not None else None
    seg = read_segmentation(path, reference=reference)
    if volume_node is not None:
        node = logic.output_segmentation(volume_node)  # reference geometry, transform, subject hierarchy
        node.SetName(name or f"{Path(path).stem} (DICOM SEG)")
    else:
        node = logic.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{Path(path).stem} (DICOM SEG)")
        node.CreateDefaultDisplayNodes()
    for s in seg:
        sid, _ = mrml_io.put_segment(node, None, s.name, s.mask, seg.ijk_to_ras)
        segment = node.GetSegmentation().GetSegment(sid)
        if s.terminology:
            mrml_io.set_terminology(segment, s.terminology)
        if s.color is not None:
            segment.SetColor(*s.color)
        if s.meta.get("prompt"):
            segment.SetTag(TAG_PROMPT, str(s.meta["prompt"]))
        if s.meta.get("algorithm_type"):
            segment.SetTag("TextSeg.AlgorithmType", str(s.meta["algorithm_type"]))
    return node
