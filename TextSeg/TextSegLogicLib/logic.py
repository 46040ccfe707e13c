"""TextSegLogic: Qt-free logic of the TextSeg module.

Takes the MRML scene and module logics as arguments (defaults: the running
Slicer application's), so it works in Slicer, in its Python console, and on
PyPI ``slicer-core`` in tests. Only the main thread may call the methods that
touch MRML (:meth:`finish`, :meth:`import_result`, :meth:`undo`); the engine
runs in a :class:`Job`'s worker thread.

Console use::

    logic = TextSegLogic()
    seg = logic.segment(volumeNode, "liver, spleen")          # blocking
    job = logic.start(volumeNode, ["liver"]); ...; logic.finish(job)  # async
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from TextSegLib.engine.base import Engine
from TextSegLib.errors import GeometryError, InputFileError, TextSegError
from TextSegLib.volume import Volume

from . import mrml_io
from .history import SegmentationHistory
from .job import Job
from .mrml_io import TAG_CREATED_BY, TAG_DIGEST, TAG_NAME, TAG_PROMPT
from .mrml_io import segment_tag as _tag
from .terms import SegmentSpec, parse_prompts, resolve_prompts


class TextSegLogic:
    """Segment volume nodes from text prompts; see the module docstring."""

    def __init__(
        self,
        scene: Any = None,
        segmentations_logic: Any = None,
        terminologies_logic: Any = None,
        volumes_logic: Any = None,
        engine: Engine | None = None,
        engine_factory: Callable[[], Engine] | None = None,
        resolve: Callable[[str, str], Any] | None = None,
    ) -> None:
        if scene is None or segmentations_logic is None:
            import slicer  # only inside the Slicer application

            scene = scene or slicer.mrmlScene
            segmentations_logic = segmentations_logic or slicer.modules.segmentations.logic()
            if terminologies_logic is None and hasattr(slicer.modules, "terminologies"):
                terminologies_logic = slicer.modules.terminologies.logic()
        self.scene = scene
        self.segmentations_logic = segmentations_logic
        self.terminologies_logic = terminologies_logic
        self.volumes_logic = volumes_logic
        self._engine = engine
        self.engine_factory = engine_factory
        self.resolve = resolve
        self.history = SegmentationHistory()
        self._volume_cache: dict[tuple[str, int, str], Volume] = {}

    # -- engine and inputs ----------------------------------------------------
    def _factory(self) -> Callable[[], Engine]:
        if self.engine_factory is not None:
            return self.engine_factory
        from TextSegLib.models.catalog import load_engine

        return load_engine  # $TEXTSEG_MODEL, else SAT-Nano if installed, else the bundled model

    @property
    def engine(self) -> Engine:
        """The engine, loaded now if needed (blocking; :meth:`start` loads it in the worker instead)."""
        if self._engine is None:
            self._engine = self._factory()()
        return self._engine

    @property
    def loaded_engine(self) -> Engine | None:
        """The engine if already built (does not load one)."""
        return self._engine

    def set_engine(self, engine: Engine | None) -> None:
        self._engine = engine

    def guess_modality(self, volume_node: Any, dicom_modality: str | None = None) -> str:
        """'ct' / 'mri' / 'pet' from a DICOM Modality tag or, failing that, intensities."""
        return self.guess_modality_reason(volume_node, dicom_modality)[0]

    def guess_modality_reason(self, volume_node: Any, dicom_modality: str | None = None) -> tuple[str, str]:
        """``(modality, why)``; the DICOM tag (CT / MR / PT) wins over TextSegLib's intensity guess."""
        from TextSegLib.io.modality import guess_modality

        tag = (dicom_modality or "").strip().upper()
        known = {"CT": "ct", "MR": "mri", "PT": "pet"}
        if tag in known:
            return known[tag], f"DICOM Modality tag is {tag!r}"
        return guess_modality(self.volume(volume_node, ""))

    def volume(self, volume_node: Any, modality: str = "") -> Volume:
        """The node as a :class:`Volume`; cached by (node ID, image MTime, modality)."""
        if volume_node is None:
            raise InputFileError("No input volume selected.", "Choose a volume in the Input volume selector.")
        image = volume_node.GetImageData()
        key = (volume_node.GetID(), image.GetMTime() if image is not None else -1, modality)
        if key not in self._volume_cache:
            self._volume_cache = {k: v for k, v in self._volume_cache.items() if k[0] != key[0]}
            self._volume_cache[key] = mrml_io.volume_from_node(volume_node, modality)
        return self._volume_cache[key]

    def specs(self, prompts: Sequence[str] | str, modality: str) -> list[SegmentSpec]:
        """Resolve prompts to segment names, terminology entries and colours."""
        if isinstance(prompts, str):
            prompts = parse_prompts(prompts)
        if not prompts:
            raise TextSegError("The prompt box is empty.", "Type one or more structures, e.g. 'liver, spleen'.")
        vocab: list[str] = []
        if self.resolve is None and self._engine is not None:
            vocab = list(self._engine.vocabulary(modality or "ct"))
        return resolve_prompts(prompts, modality, self.terminologies_logic, vocab, self.resolve)

    # -- running ----------------------------------------------------------------
    def start(
        self,
        volume_node: Any,
        prompts: Sequence[str] | str,
        segmentation_node: Any = None,
        modality: str | None = None,
        roi_ras: Any = None,
        threaded: bool = True,
    ) -> Job:
        """Start segmenting in a worker thread; poll ``job.snapshot()`` then call :meth:`finish`."""
        mod = modality if modality is not None else self.guess_modality(volume_node)
        volume = self.volume(volume_node, mod)
        job = Job(
            engine=self._engine,
            engine_factory=None if self._engine is not None else self._factory(),
            volume=volume,
            specs=self.specs(prompts, volume.modality),
            volume_node_id=volume_node.GetID(),
            segmentation_node_id=segmentation_node.GetID() if segmentation_node is not None else None,
            roi_ras=roi_ras,
        )
        return job.start(threaded=threaded)

    def finish(self, job: Job) -> Any:
        """On the main thread, after ``job.done``: import masks; returns the segmentation node.

        Re-raises the worker's error (a :class:`CancelledError` when cancelled).
        """
        if not job.done:
            raise TextSegError("The segmentation job is still running.", "Wait for it or cancel it first.")
        if self._engine is None and job.engine is not None:
            self._engine = job.engine  # keep the model loaded by the worker
        if job.error is not None:
            raise job.error
        if job.imported:
            return self.scene.GetNodeByID(job.segmentation_node_id)
        volume_node = self.scene.GetNodeByID(job.volume_node_id)
        if volume_node is None:
            raise InputFileError("The input volume was removed from the scene while segmenting.")
        seg_node = self.scene.GetNodeByID(job.segmentation_node_id) if job.segmentation_node_id else None
        t0 = time.perf_counter()
        seg_node, ids = self.import_result(volume_node, job.result.masks, job.specs, seg_node)
        job.timings = dict(job.result.timings, engine=job.snapshot().elapsed_s, import_=time.perf_counter() - t0)
        job.imported_segment_ids = ids
        job.segmentation_node_id = seg_node.GetID()
        job.imported = True
        return seg_node

    def segment(self, volume_node: Any, prompts: Sequence[str] | str, segmentation_node: Any = None, modality: str | None = None) -> Any:
        """Blocking: segment and import; returns the segmentation node (for scripts and the console)."""
        job = self.start(volume_node, prompts, segmentation_node, modality, threaded=False)
        return self.finish(job)

    # -- MRML output ------------------------------------------------------------
    def output_segmentation(self, volume_node: Any, segmentation_node: Any = None) -> Any:
        """The given segmentation node, or a new one named after the volume; ready for DICOM export."""
        if segmentation_node is None:
            segmentation_node = self.scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{volume_node.GetName()} TextSeg"
            )
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        self._place_in_hierarchy(volume_node, segmentation_node)
        return segmentation_node

    def _place_in_hierarchy(self, volume_node: Any, segmentation_node: Any) -> None:
        import slicer

        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if sh is None:
            return
        volume_item = sh.GetItemByDataNode(volume_node)
        if not volume_item:
            return  # the volume is not in the hierarchy (e.g. a bare scene): nothing to follow
        parent = sh.GetItemParent(volume_item)
        item = sh.GetItemByDataNode(segmentation_node)
        if not item:
            sh.CreateItem(parent, segmentation_node)
        elif sh.GetItemParent(item) != parent:
            sh.SetItemParent(item, parent)

    def _find_reusable(self, segmentation: Any, spec: SegmentSpec, seg_node: Any) -> str | None:
        """ID of the segment TextSeg made for this prompt, if the user has not edited it since."""
        for i in range(segmentation.GetNumberOfSegments()):
            sid = segmentation.GetNthSegmentID(i)
            s = segmentation.GetSegment(sid)
            tag = _tag(s, TAG_CREATED_BY)
            if tag != "TextSeg" or _tag(s, TAG_PROMPT).lower() != spec.prompt.lower():
                continue
            if _tag(s, TAG_NAME) != s.GetName():
                continue  # renamed by the user
            if mrml_io.segment_digest(self.segmentations_logic, seg_node, sid) != _tag(s, TAG_DIGEST):
                continue  # painted or otherwise edited by the user
            return sid
        return None

    def import_result(
        self, volume_node: Any, masks: dict[str, np.ndarray], specs: Sequence[SegmentSpec], segmentation_node: Any = None
    ) -> tuple[Any, list[str]]:
        """Write each prompt's mask into ONE segment, never overwriting user-made or user-edited ones."""
        volume = self.volume(volume_node, "")
        for spec in specs:
            m = masks.get(spec.prompt)
            if m is None or tuple(m.shape) != volume.shape:
                raise GeometryError(
                    f"Mask for {spec.prompt!r} has shape {None if m is None else m.shape}, volume {volume.shape}.",
                    "The engine must return masks on the source grid.",
                )
        seg_node = self.output_segmentation(volume_node, segmentation_node)
        segmentation = seg_node.GetSegmentation()
        self.history.save(seg_node)
        ids: list[str] = []
        was = seg_node.StartModify()
        try:
            for spec in specs:
                reuse = self._find_reusable(segmentation, spec, seg_node)
                sid, digest = mrml_io.put_segment(seg_node, reuse, spec.name, masks[spec.prompt], volume.ijk_to_ras)
                s = segmentation.GetSegment(sid)
                s.SetName(spec.name)
                if spec.color is not None:
                    s.SetColor(*spec.color)
                if spec.terminology:
                    s.SetTerminology(spec.terminology)
                s.SetTag(TAG_CREATED_BY, "TextSeg")
                s.SetTag(TAG_PROMPT, spec.prompt)
                s.SetTag(TAG_NAME, spec.name)
                s.SetTag(TAG_DIGEST, digest)
                ids.append(sid)
        finally:
            seg_node.EndModify(was)
        return seg_node, ids

    def undo(self, segmentation_node: Any) -> bool:
        """Revert the last TextSeg run or refinement click; False if nothing to undo."""
        return self.history.undo(segmentation_node)

    def redo(self, segmentation_node: Any) -> bool:
        """Re-apply what :meth:`undo` reverted last; False if nothing to redo."""
        return self.history.redo(segmentation_node)

    def refine_segment(
        self,
        volume_node: Any,
        segmentation_node: Any,
        segment_id: str,
        positive_ras: Sequence[Sequence[float]] = (),
        negative_ras: Sequence[Sequence[float]] = (),
        boxes_ras: Sequence[Any] = (),
    ) -> Any:
        """Refine a segment with RAS clicks/boxes (``TextSegLib.refine``); undoable with :meth:`undo`."""
        from .refinement import refine_segment

        return refine_segment(self, volume_node, segmentation_node, segment_id, positive_ras, negative_ras, boxes_ras)

    def refinement(self, volume_node: Any, segmentation_node: Any, segment_id: str) -> Any:
        """The segment's :class:`~.refinement.SegmentRefinement` (prompt nodes, live mode, sessions)."""
        from .refinement import get_refinement

        return get_refinement(self, volume_node, segmentation_node, segment_id)

    def export_seg_nrrd(self, segmentation_node: Any, path: str, overwrite: bool = False) -> str:
        """Write the segmentation (names, terminology, colours, tags) to a ``.seg.nrrd`` file.

        For DICOM SEG use Slicer's DICOM export: the segmentation already sits
        under the volume's study with the volume as reference geometry.
        """
        import os

        import slicer
        from TextSegLib.errors import OutputPathError

        if not path.endswith(".seg.nrrd"):
            raise OutputPathError(f"{path}: segmentation files must end in .seg.nrrd.", "Choose a name like 'liver.seg.nrrd'.")
        if os.path.exists(path) and not overwrite:
            raise OutputPathError(f"{path} already exists; TextSeg does not overwrite files.", "Choose another name.")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise OutputPathError(f"{path}: the folder does not exist.", "Choose an existing folder.")
        storage = slicer.vtkMRMLSegmentationStorageNode()
        self.scene.AddNode(storage)
        try:
            storage.SetFileName(path)
            if not storage.WriteData(segmentation_node):
                raise OutputPathError(f"{path}: Slicer could not write the segmentation.", "Check the folder's permissions and free space.")
        finally:
            self.scene.RemoveNode(storage)
        return path

    def show_3d(self, segmentation_node: Any, show: bool = True) -> None:
        """Create (or drop) the closed-surface representation so segments appear in 3D."""
        if show:
            segmentation_node.CreateClosedSurfaceRepresentation()
        else:
            segmentation_node.RemoveClosedSurfaceRepresentation()
