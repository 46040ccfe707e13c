"""MRML <-> numpy: volume nodes to :class:`Volume`, masks to segments (fast path).

No Qt and no ``slicer.util``: only VTK and the MRML classes, so this runs in
the Slicer application and on PyPI ``slicer-core`` alike.

Masks are written straight into the segment's binary labelmap, cropped to
their bounding box (``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``),
which avoids a full-volume copy per segment.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from TextSegLib.errors import GeometryError, InputFileError
from TextSegLib.volume import Volume


#: Segment tags that mark what TextSeg created (see TextSegLogic.import_result).
TAG_CREATED_BY = "TextSeg.CreatedBy"
TAG_PROMPT = "TextSeg.Prompt"
TAG_DIGEST = "TextSeg.Digest"
TAG_NAME = "TextSeg.Name"
TAG_PRESENCE = "TextSeg.PresenceState"  # "found" or "uncertain" (the segment is then named "Liver ?")


def segment_tag(segment: Any, name: str) -> str:
    """A segment tag's value, or "" when absent."""
    from vtkmodules.vtkCommonCore import reference

    value = reference("")
    return str(value.get()) if segment.GetTag(name, value) else ""


def set_terminology(segment: Any, entry: str) -> None:
    """Store a serialized terminology entry on a segment.

    ``vtkSegment.SetTerminology`` (Slicer 5.10, commit 49a2510) only writes the tag named by
    ``vtkSegment.GetTerminologyEntryTagName()``; older builds have that tag but not the method,
    so the tag is written directly there."""
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(entry)
    else:
        tag = segment.GetTerminologyEntryTagName() if hasattr(segment, "GetTerminologyEntryTagName") else "TerminologyEntry"
        segment.SetTag(tag, entry)


def nodes_by_class(scene: Any, class_name: str) -> list[Any]:
    """The scene's nodes of a class as a list (the vtkCollection is released at once)."""
    collection = scene.GetNodesByClass(class_name)
    collection.UnRegister(None)  # the scene hands over a new reference (as slicer.util.getNodesByClass does)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _slicer() -> Any:
    import slicer

    return slicer


def matrix_to_numpy(m: vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def numpy_to_matrix(a: np.ndarray) -> vtkMatrix4x4:
    m = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def ijk_to_ras(volume_node: Any) -> np.ndarray:
    """The node's IJK→RAS matrix (parent transforms are not applied)."""
    m = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    return matrix_to_numpy(m)


def array_kji(volume_node: Any) -> np.ndarray:
    """A zero-copy ``[k, j, i]`` view of the node's voxels (like ``arrayFromVolume``)."""
    name = volume_node.GetName() if volume_node is not None else "volume"
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputFileError(f"{name}: the volume node has no image data.", "Load or select a volume with voxels.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputFileError(
            f"{name}: the volume has {image.GetNumberOfScalarComponents()} components per voxel; TextSeg needs a scalar volume.",
            "Convert it to a scalar volume (Vector to Scalar Volume module) first.",
        )
    dims = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(dims[2], dims[1], dims[0])


def volume_from_node(volume_node: Any, modality: str = "") -> Volume:
    """The node as a :class:`Volume` with exact geometry (no voxel copy)."""
    transform = volume_node.GetParentTransformNode()
    if transform is not None and not transform.IsTransformToWorldLinear():
        raise GeometryError(
            f"{volume_node.GetName()}: the volume is under a non-linear transform.",
            "Harden the transform (Data module, right-click > Harden transform) before segmenting.",
        )
    return Volume.from_slicer(array_kji(volume_node), ijk_to_ras(volume_node), modality, volume_node.GetName())


def bounding_box_kji(mask_kji: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Tight bounding box of the True voxels of a ``[k, j, i]`` mask, or None if empty."""
    plane = mask_kji.any(axis=0)  # one pass over the data: [j, i]
    if not plane.any():
        return None
    jj = np.flatnonzero(plane.any(axis=1))
    ii = np.flatnonzero(plane.any(axis=0))
    sub = mask_kji[:, jj[0] : jj[-1] + 1, ii[0] : ii[-1] + 1]
    kk = np.flatnonzero(sub.any(axis=(1, 2)))
    return (slice(kk[0], kk[-1] + 1), slice(jj[0], jj[-1] + 1), slice(ii[0], ii[-1] + 1))


def mask_digest(mask_kji: np.ndarray, offset_kji: tuple[int, int, int] = (0, 0, 0)) -> str:
    """Content hash of a mask that does not depend on padding or array extent."""
    box = bounding_box_kji(mask_kji)
    if box is None:
        return "empty"
    crop = np.ascontiguousarray(mask_kji[box], dtype=bool)
    corner = [int(b.start) + int(o) for b, o in zip(box, offset_kji)]
    h = hashlib.sha1(np.asarray(corner + list(crop.shape), dtype=np.int64).tobytes())
    h.update(np.packbits(crop).tobytes())
    return h.hexdigest()[:20]


def oriented_image(mask_kji_crop: np.ndarray, corner_kji: tuple[int, int, int], ijk2ras: np.ndarray) -> Any:
    """A ``vtkOrientedImageData`` (uchar) holding a cropped mask at its place in the volume grid."""
    slicer = _slicer()
    image = slicer.vtkOrientedImageData()
    k0, j0, i0 = (int(c) for c in corner_kji)
    nk, nj, ni = mask_kji_crop.shape
    image.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk2ras))
    image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask_kji_crop.reshape(-1)
    return image


def labelmap_from_mask(mask_ijk: np.ndarray, ijk2ras: np.ndarray) -> tuple[Any, str]:
    """A cropped uchar labelmap (value 1) of ``mask_ijk`` (``[i, j, k]``, volume grid) and its digest."""
    mask_kji = mask_ijk.transpose(2, 1, 0)  # free when the engine's array came from a kji view
    if mask_kji.dtype != np.bool_:
        mask_kji = mask_kji != 0
    box = bounding_box_kji(mask_kji)
    if box is None:
        return oriented_image(np.zeros((0, 0, 0), np.uint8), (0, 0, 0), ijk2ras), "empty"
    crop = mask_kji[box]
    corner = (box[0].start, box[1].start, box[2].start)
    return oriented_image(crop.view(np.uint8), corner, ijk2ras), mask_digest(crop, corner)


def put_segment(
    segmentation_node: Any,
    segment_id: str | None,
    name: str,
    mask_ijk: np.ndarray,
    ijk2ras: np.ndarray,
) -> tuple[str, str]:
    """Add a segment, or replace segment ``segment_id`` in place (same ID and position).

    The segment gets its own cropped labelmap (no merge into a shared
    labelmap, which would cost a full-layer pass per segment). Returns
    ``(segment_id, digest)``.
    """
    slicer = _slicer()
    segmentation = segmentation_node.GetSegmentation()
    image, digest = labelmap_from_mask(mask_ijk, ijk2ras)
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), image)
    segment.SetLabelValue(1)
    if segment_id and segmentation.GetSegment(segment_id) is not None:
        old = segmentation.GetSegment(segment_id)
        segment.SetColor(old.GetColor())
        index = segmentation.GetSegmentIndex(segment_id)
        following = segmentation.GetNthSegmentID(index + 1) if index + 1 < segmentation.GetNumberOfSegments() else ""
        segmentation.RemoveSegment(segment_id)
        segmentation.AddSegment(segment, segment_id, following)
    else:
        segment_id = segmentation.GenerateUniqueSegmentID(name) if not segment_id else segment_id
        segmentation.AddSegment(segment, segment_id)
    return segment_id, digest


def write_mask(
    segmentations_logic: Any,
    segmentation_node: Any,
    segment_id: str,
    mask_ijk: np.ndarray,
    ijk2ras: np.ndarray,
) -> str:
    """Replace a segment's voxels through Slicer's merge logic (as an editor effect would); returns its digest."""
    image, digest = labelmap_from_mask(mask_ijk, ijk2ras)
    segmentations_logic.ClearSegment(segmentation_node, segment_id)
    if digest != "empty":
        mode = segmentations_logic.MODE_REPLACE
        if not segmentations_logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, mode):
            raise GeometryError(f"Segment {segment_id!r}: Slicer refused the labelmap.", "Check the segmentation's geometry.")
    return digest


def read_mask_kji(segmentations_logic: Any, segmentation_node: Any, segment_id: str) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """A segment's labelmap as ``(mask_kji, corner_kji, ijk_to_ras)`` in its own grid."""
    slicer = _slicer()
    image = slicer.vtkOrientedImageData()
    segmentations_logic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, image, False)
    ext = image.GetExtent()
    if ext[1] < ext[0] or image.GetPointData().GetScalars() is None:
        return np.zeros((0, 0, 0), bool), (0, 0, 0), np.eye(4)
    m = vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    label = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    arr = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    arr = arr.reshape(ext[5] - ext[4] + 1, ext[3] - ext[2] + 1, ext[1] - ext[0] + 1) == label  # shared labelmaps
    return arr, (ext[4], ext[2], ext[0]), matrix_to_numpy(m)


def segment_digest(segmentations_logic: Any, segmentation_node: Any, segment_id: str) -> str:
    """The digest of a segment's current content (compare with :func:`write_mask`'s)."""
    arr, corner, _ = read_mask_kji(segmentations_logic, segmentation_node, segment_id)
    return mask_digest(arr, corner)


def segment_array_ijk(segmentations_logic: Any, segmentation_node: Any, segment_id: str, volume: Volume) -> np.ndarray:
    """A segment as a bool ``[i, j, k]`` array on ``volume``'s grid (which it must share)."""
    arr, corner, m = read_mask_kji(segmentations_logic, segmentation_node, segment_id)
    out = np.zeros(volume.shape[::-1], dtype=bool)
    if arr.size == 0:
        return out.transpose(2, 1, 0)
    if not np.allclose(m, volume.ijk_to_ras, atol=1e-4):
        raise GeometryError(
            f"Segment {segment_id!r} is stored on another grid than {volume.name or 'the volume'}.",
            "Export it with the volume as reference geometry first.",
        )
    k0, j0, i0 = corner
    dst = tuple(slice(max(c, 0), min(c + s, n)) for c, s, n in zip(corner, arr.shape, out.shape))
    src = tuple(slice(d.start - c, d.stop - c) for d, c in zip(dst, (k0, j0, i0)))
    out[dst] = arr[src]
    return out.transpose(2, 1, 0)
