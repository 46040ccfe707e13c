"""TextSegLogic: Qt-free logic of the TextSeg module.

Takes the MRML scene and module logics as arguments (defaults: the running
Slicer application's), so it works in Slicer, in its Python console, and on
PyPI ``slicer-core`` in tests. Everything runs on the main thread: inference
runs in the engine process (:mod:`.engine_process`) or on a remote server, and
a :class:`~.job.SceneJob` is advanced by short polls (``job.poll()`` from a timer).
An engine object given to the logic (scripts, tests) runs in this interpreter.

Prompts are resolved once through TextSegLib's prompt path (:mod:`.prompts`);
each found prompt becomes one coded segment (name, terminology, colour from the
resolved concept), a not-found prompt creates none and is reported with its reason.

Console use::

    logic = TextSegLogic()
    seg = logic.segment(volumeNode, "liver, spleen")              # blocking
    job = logic.start(volumeNode, ["liver"]); job.poll() ...; logic.finish(job)
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence


from TextSegLib.engine.base import Engine, EngineResult
from TextSegLib.engine.results import display_name
from TextSegLib.errors import GeometryError, InputFileError, ModelError, TextSegError
from TextSegLib.volume import Volume

from . import engines, mrml_io
from .engine_process import EngineConfig, EngineProcess
from .history import SegmentationHistory
from .job import InlineRunner, ProcessRunner, SceneJob
from .mrml_io import TAG_CREATED_BY, TAG_DIGEST, TAG_NAME, TAG_PRESENCE, TAG_PROMPT
from .mrml_io import segment_tag as _tag
from .prompts import ResolvedPrompt, colors_for, parse_prompts, resolve_for


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
        engine_config: EngineConfig | None = None,
    ) -> None:
        if getattr(self, "_core_initialized", False):
            return  # a second __init__ through a mixin's super() must not reset the state
        self._core_initialized = True
        if scene is None or segmentations_logic is None:
            import slicer  # only inside the Slicer application

            scene = scene or slicer.mrmlScene
            segmentations_logic = segmentations_logic or slicer.modules.segmentations.logic()
        self.scene = scene
        self.segmentations_logic = segmentations_logic
        self.terminologies_logic = terminologies_logic
        self.volumes_logic = volumes_logic
        self._engine = engine
        self.engine_factory = engine_factory
        self.model_key = engines.DEFAULT_CHOICE
        self.engine_config = engine_config
        self.process: EngineProcess | None = None
        self.remote: tuple[str, str] | None = None  # (url, api key) of a remote server
        self._remote_client: Any = None
        self.history = SegmentationHistory()
        self._volume_cache: dict[tuple[str, int, str], Volume] = {}
        self.scene_generation = 0
    # -- scene safety -------------------------------------------------------------
    def scene_closed(self) -> None:
        """Call on the scene's EndCloseEvent (the Slicer widget does): node IDs will recur after
        ``vtkMRMLScene::Clear``, so forget the run history, refine sessions and cached volumes,
        and refuse to import a job started before the close."""
        self.scene_generation += 1
        self.history.clear()
        for refinement in getattr(self, "_refinements", {}).values():
            refinement.set_live(False)
        self.__dict__.pop("_refinements", None)
        self._volume_cache.clear()

    # -- engine ---------------------------------------------------------------------
    @property
    def loaded_engine(self) -> Engine | None:
        """The in-process engine, if one was given or built (does not load one)."""
        return self._engine

    def set_engine(self, engine: Engine | None) -> None:
        """Run ``engine`` in this interpreter (scripts, tests); ``None``: back to the engine process."""
        self._engine = engine

    def use_model(self, key: str, device: str = "auto", model_dir: str = "", python: str = "",
                  url: str = "", api_key: str = "") -> None:
        """Select the model of the panel: a local one runs in the engine process, 'remote' on ``url``.

        A change of model, device, folder or interpreter stops the current engine process (the
        next run starts one with the new settings); the same settings keep the loaded model."""
        engines.check(key, model_dir)
        self._engine, self.engine_factory, self.model_key = None, None, key
        if key == "remote":
            self.remote, self._remote_client = (url, api_key), None
            return
        self.remote = None
        config = EngineConfig(model=str(engines.CHOICES[key][1]), device=device or "auto", model_dir=model_dir,
                              python=python)
        if self.process is not None and self.process.config != config:
            self.process.stop()
            self.process = None
        self.engine_config = config

    def shutdown(self) -> None:
        """Stop the engine process (module cleanup, application exit)."""
        if self.process is not None:
            self.process.stop()

    def _engine_process(self) -> EngineProcess:
        if self.engine_config is None:
            from TextSegLib.models.catalog import default_model_name

            name = default_model_name()
            self.model_key = next((k for k, (_, n) in engines.CHOICES.items() if n == name), self.model_key)
            self.engine_config = EngineConfig(model=name)
        if self.process is None or self.process.config != self.engine_config:
            if self.process is not None:
                self.process.stop()
            self.process = EngineProcess(self.engine_config)
        return self.process

    #: Asks for and installs missing Python packages; returns True when they are importable.
    #: The Slicer widget sets it, and it runs before the first local run (as the peer
    #: extensions ask), not when the module is entered. None: no check (scripts, tests).
    ensure_dependencies: Callable[[], bool] | None = None
    _dependencies_ok = False

    def _check_dependencies(self) -> None:
        """Before the engine process starts: the packages it imports must be there (asked once)."""
        if self.ensure_dependencies is None or self._dependencies_ok:
            return
        if self.engine_config is not None and self.engine_config.python:
            return  # an "Engine Python" set in Settings brings its own packages
        if not self.ensure_dependencies():
            raise ModelError("TextSeg's Python packages (PyTorch and others) are not installed yet.",
                             "Accept the install when asked, restart Slicer if it says so, then run again.")
        self._dependencies_ok = True

    def _connect_process(self) -> tuple[Any, bool]:
        process = self._engine_process()
        process.ensure_started()  # a crashed process is restarted here, on the next run
        ready = process.check() == "ready"
        return process.client(), ready

    def _remote_engine(self) -> Any:
        from TextSegLib.remote import RemoteEngine

        url, key = self.remote or ("", "")
        if self._remote_client is None:
            self._remote_client = RemoteEngine(url, api_key=key or None)
        return self._remote_client

    def description(self, modality: str = "") -> Any:
        """What prompts are resolved against: the engine object, or the selected model's files."""
        if self._engine is not None:
            return self._engine
        if self.engine_factory is not None:
            self._engine = self.engine_factory()
            return self._engine
        if self.remote is not None:
            return self._remote_engine()
        config = self.engine_config
        if config is None:
            self._engine_process()
            config = self.engine_config
        key = next((k for k, (_, n) in engines.CHOICES.items() if n == config.model), "bundled")
        return engines.describe(key, config.model_dir)

    # -- inputs -------------------------------------------------------------------------
    def guess_modality(self, volume_node: Any, dicom_modality: str | None = None) -> str:
        """'ct' / 'mri' / 'pet' from a DICOM Modality tag or, failing that, intensities."""
        return self.guess_modality_reason(volume_node, dicom_modality)[0]

    def guess_modality_reason(self, volume_node: Any, dicom_modality: str | None = None) -> tuple[str, str]:
        """``(modality, why)``; the DICOM tag (CT / MR / PT) wins over TextSegLib's intensity guess.

        Cached per volume content: the guess reads millions of voxels, so it is computed once
        per (node, image MTime), not on every keystroke in the prompt box."""
        from TextSegLib.io.modality import guess_modality

        tag = (dicom_modality or "").strip().upper()
        known = {"CT": "ct", "MR": "mri", "PT": "pet"}
        if tag in known:
            return known[tag], f"DICOM Modality tag is {tag!r}"
        vol = self.volume(volume_node, "")
        cache = self.__dict__.setdefault("_modality_cache", {})
        key = (volume_node.GetID(), id(vol))
        if key not in cache:
            cache.clear()
            cache[key] = guess_modality(vol)
        return cache[key]

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

    def resolve(self, prompts: Sequence[str] | str, modality: str) -> list[ResolvedPrompt]:
        """Resolve prompts once (TextSegLib's prompt path) for the selected model or engine."""
        if isinstance(prompts, str):
            prompts = parse_prompts(prompts)
        prompts = [p for p in (" ".join(str(x).split()) for x in prompts) if p]
        if not prompts:
            raise TextSegError("The prompt box is empty.", "Type one or more structures, e.g. 'liver, spleen'.")
        return resolve_for(self.description(modality), prompts, modality)

    specs = resolve  # the name the panel used before the prompt path existed

    # -- running ----------------------------------------------------------------------
    def start(
        self,
        volume_node: Any,
        prompts: Sequence[str] | str,
        segmentation_node: Any = None,
        modality: str | None = None,
        roi_ras: Any = None,
        threaded: bool = True,
    ) -> SceneJob:
        """Resolve the prompts and start a job; advance it with ``job.poll()``, then :meth:`finish`.

        ``threaded`` only matters for an in-process engine (``engine=`` / ``set_engine``)."""
        mod = modality if modality is not None else self.guess_modality(volume_node)
        volume = self.volume(volume_node, mod)
        resolved = self.resolve(prompts, volume.modality)
        if self._engine is not None or self.engine_factory is not None:
            runner: Any = InlineRunner(self._engine, self.engine_factory, threaded=threaded)
        elif self.remote is not None:
            client = self._remote_engine()
            runner = ProcessRunner(lambda: (client, True))
        else:
            self._check_dependencies()
            process = self._engine_process()
            runner = ProcessRunner(self._connect_process, name=process.config.model, health=lambda: process.check(grace_s=2.0))
        job = SceneJob(volume, resolved, volume_node_id=volume_node.GetID(),
                  segmentation_node_id=segmentation_node.GetID() if segmentation_node is not None else None,
                  runner=runner, roi_ras=roi_ras, scene_generation=self.scene_generation)
        if threaded or isinstance(runner, ProcessRunner):
            job.poll()  # starts the worker thread / the engine process at once
        return job

    def finish(self, job: SceneJob) -> Any:
        """On the main thread, after the job ended (``job.is_final``): import masks; returns the segmentation node.

        Re-raises the job's error (a :class:`CancelledError` when cancelled)."""
        if not job.is_final:
            raise TextSegError("The segmentation job is still running.", "Wait for it or cancel it first.")
        runner = job.runner
        if self._engine is None and isinstance(runner, InlineRunner) and runner.engine is not None:
            self._engine = runner.engine  # keep the model loaded by the first run
        if job.error is not None:
            raise job.error
        if job.scene_generation != self.scene_generation:
            raise InputFileError("The scene was closed while segmenting; the result was discarded.",
                                 "Load the volume again and run once more.")
        if job.imported:
            return self.scene.GetNodeByID(job.segmentation_node_id)
        volume_node = self.scene.GetNodeByID(job.volume_node_id)
        if volume_node is None:
            raise InputFileError("The input volume was removed from the scene while segmenting.")
        seg_node = self.scene.GetNodeByID(job.segmentation_node_id) if job.segmentation_node_id else None
        t0 = time.perf_counter()
        seg_node, ids = self.import_result(volume_node, job.result, job.prompts, seg_node)
        job.stage_s = dict(job.result.timings, **job.stage_s, engine=job.elapsed_s, import_=time.perf_counter() - t0)
        job.imported_segment_ids = ids
        job.not_found = {p.name: job.result.reasons.get(p.text, "") or "not found"
                         for p in job.prompts if not job.result.is_found(p.text)}
        job.uncertain = {display_name(p.name, "uncertain"): job.result.presence.get(p.text)
                         for p in job.prompts if job.result.state(p.text) == "uncertain"}
        job.measurements = self.measure(job.volume, job.result, job.prompts)
        job.segmentation_node_id = seg_node.GetID()
        job.notice = self.notice  # e.g. "Wrote into a new segmentation, ...: <why>"
        job.imported = True
        return seg_node

    def segment(self, volume_node: Any, prompts: Sequence[str] | str, segmentation_node: Any = None,
                modality: str | None = None, timeout_s: float | None = None) -> Any:
        """Blocking: segment and import; returns the segmentation node (for scripts and the console)."""
        job = self.start(volume_node, prompts, segmentation_node, modality, threaded=False)
        if not job.wait(timeout_s):
            job.request_cancel()
            raise TextSegError(f"The segmentation did not finish within {timeout_s} s.", "Try a smaller ROI.")
        return self.finish(job)

    @staticmethod
    def measure(volume: Volume, result: EngineResult, prompts: Sequence[ResolvedPrompt]) -> list:
        """Volume (mL), voxels and image statistics per prompt (``TextSegLib.measurements``)."""
        from TextSegLib.measurements import measure_result

        return measure_result(result, volume, prompts)  # with the three-state verdict and presence

    # -- MRML output ----------------------------------------------------------------------
    def output_segmentation(self, volume_node: Any, segmentation_node: Any = None) -> Any:
        """The given segmentation node, or a new one named after the volume; ready for DICOM export.

        Masks are on the volume's own grid, so the node must sit under the volume's parent
        transform and keep a binary-labelmap source. A chosen node with segments that would move
        (another transform) or be converted (a closed-surface source) is left as it is: the run
        goes into a new node, and :attr:`notice` says why."""
        self.notice = ""
        reason = self._unsafe_target(volume_node, segmentation_node) if segmentation_node is not None else ""
        if reason:
            segmentation_node = None
        if segmentation_node is None:
            segmentation_node = self.scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{volume_node.GetName()} TextSeg")
            )
            segmentation_node.CreateDefaultDisplayNodes()
        if reason:
            self.notice = f"Wrote into a new segmentation, {segmentation_node.GetName()}: {reason}"
        if segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
            segmentation_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())  # no segments to move
        segmentation = segmentation_node.GetSegmentation()
        labelmap = _labelmap_name()
        if segmentation.GetSourceRepresentationName() != labelmap:
            segmentation.SetSourceRepresentationName(labelmap)  # empty: nothing is converted
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        self._place_in_hierarchy(volume_node, segmentation_node)
        return segmentation_node

    notice = ""  #: why the last run did not write into the chosen segmentation ('' when it did)

    def _unsafe_target(self, volume_node: Any, segmentation_node: Any) -> str:
        """Why writing into the user's segmentation would change their segments ('' when it is safe)."""
        segmentation = segmentation_node.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            return ""
        name = segmentation_node.GetName()
        if segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
            def under(node: Any) -> str:
                transform = node.GetParentTransformNode()
                return f"under transform {transform.GetName()!r}" if transform is not None else "under no transform"

            return (f"{name} is {under(segmentation_node)} and {volume_node.GetName()} {under(volume_node)}; "
                    "moving it there would move its segments.")
        source = segmentation.GetSourceRepresentationName()
        if source != _labelmap_name():
            return (f"{name} stores its segments as {source}; TextSeg's labelmaps would convert "
                    "or drop them (set its source representation to Binary labelmap to write into it).")
        return ""

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

    def _find_reusable(self, segmentation: Any, prompt: ResolvedPrompt, seg_node: Any) -> str | None:
        """ID of the segment TextSeg made for this prompt, if the user has not edited it since."""
        for i in range(segmentation.GetNumberOfSegments()):
            sid = segmentation.GetNthSegmentID(i)
            s = segmentation.GetSegment(sid)
            tag = _tag(s, TAG_CREATED_BY)
            if tag != "TextSeg" or _tag(s, TAG_PROMPT).lower() != prompt.text.lower():
                continue
            if _tag(s, TAG_NAME) != s.GetName():
                continue  # renamed by the user
            if mrml_io.segment_digest(self.segmentations_logic, seg_node, sid) != _tag(s, TAG_DIGEST):
                continue  # painted or otherwise edited by the user
            return sid
        return None

    def import_result(self, volume_node: Any, result: EngineResult | dict, prompts: Sequence[ResolvedPrompt],
                      segmentation_node: Any = None) -> tuple[Any, list[str]]:
        """Write each found prompt's mask into ONE coded segment; not-found prompts make none.

        Never overwrites user-made or user-edited segments. ``result`` may be a plain
        ``{text: mask}`` dict (every prompt then counts as found when its mask has a voxel)."""
        if isinstance(result, dict):
            result = EngineResult(masks=dict(result))
        volume = self.volume(volume_node, "")
        for p in prompts:
            m = result.masks.get(p.text)
            if m is None or tuple(m.shape) != volume.shape:
                raise GeometryError(
                    f"Mask for {p.text!r} has shape {None if m is None else m.shape}, volume {volume.shape}.",
                    "The engine must return masks on the source grid.",
                )
        found = [p for p in prompts if result.is_found(p.text)]
        seg_node = self.output_segmentation(volume_node, segmentation_node)
        segmentation = seg_node.GetSegmentation()
        self.history.save(seg_node)
        ids: list[str] = []
        colors = colors_for(found)
        was = seg_node.StartModify()
        try:
            for p, color in zip(found, colors):
                reuse = self._find_reusable(segmentation, p, seg_node)
                name = display_name(p.name, result.state(p.text))  # an uncertain one: "Liver ?"
                sid, digest = mrml_io.put_segment(seg_node, reuse, name, result.masks[p.text], volume.ijk_to_ras)
                s = segmentation.GetSegment(sid)
                s.SetName(name)
                s.SetColor(*color)
                if p.terminology:
                    mrml_io.set_terminology(s, p.terminology)
                s.SetTag(TAG_CREATED_BY, "TextSeg")
                s.SetTag(TAG_PROMPT, p.text)
                s.SetTag(TAG_NAME, name)
                s.SetTag(TAG_PRESENCE, result.state(p.text))
                s.SetTag(TAG_DIGEST, digest)
                ids.append(sid)
        finally:
            seg_node.EndModify(was)
        self.history.seal(seg_node)  # Undo restores the snapshot only over exactly this state
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


def _labelmap_name() -> str:
    import slicer

    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
