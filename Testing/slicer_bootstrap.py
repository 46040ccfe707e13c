"""A headless MRML scene with the module logics TextSeg needs, from PyPI ``slicer-core``.

Outside the Slicer application there is no ``slicer.mrmlScene`` or
``slicer.app``. :func:`make_scene` builds what the app would: a scene, an
application logic, and the Colors, Volumes, Terminologies, Segmentations and
Subject-hierarchy logics, with Slicer's terminology JSON loaded. The
terminology files are the ones shipped by PyPI ``trame-slicer`` (found by
path, so ``trame_slicer``'s own imports are not needed).

Usage::

    from slicer_bootstrap import make_scene
    env = make_scene()
    node = env.load_volume("CTChest4.nrrd")
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def terminology_folder() -> Path | None:
    """Folder holding Slicer's ``*.term.json`` files (from trame-slicer), or None."""
    env = os.environ.get("TEXTSEG_SLICER_TERMINOLOGIES")
    if env and Path(env).is_dir():
        return Path(env)
    spec = importlib.util.find_spec("trame_slicer")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "resources" / "terminologies"
    return folder if folder.is_dir() else None


@dataclass
class SlicerEnv:
    """A scene plus the module logics, as Slicer's application would hold them."""

    scene: Any
    app_logic: Any
    color_logic: Any
    volumes_logic: Any
    terminologies_logic: Any
    segmentations_logic: Any
    subject_hierarchy_logic: Any

    def logics(self) -> dict[str, Any]:
        """Keyword arguments for :class:`TextSegLogic`."""
        return {
            "scene": self.scene,
            "volumes_logic": self.volumes_logic,
            "segmentations_logic": self.segmentations_logic,
            "terminologies_logic": self.terminologies_logic,
        }

    def load_volume(self, path: str | os.PathLike, name: str | None = None) -> Any:
        """Read a scalar volume file into a new volume node (like ``slicer.util.loadVolume``)."""
        path = Path(path)
        node = self.volumes_logic.AddArchetypeVolume(str(path), name or path.name.split(".")[0], 0)
        if node is None:
            raise OSError(f"{path}: slicer-core could not read this volume.")
        return node


def make_scene() -> SlicerEnv:
    """Create a fresh headless scene with its logics (about 0.1 s after the first import)."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())

    def register(logic: Any, name: str, share: Path | None = None) -> Any:
        if share is not None and hasattr(logic, "SetModuleShareDirectory"):
            logic.SetModuleShareDirectory(share.as_posix())
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        return logic

    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Colors", color_logic)
    terms = terminology_folder()
    return SlicerEnv(
        scene=scene,
        app_logic=app_logic,
        color_logic=color_logic,
        volumes_logic=register(slicer.vtkSlicerVolumesLogic(), "Volumes"),
        terminologies_logic=register(slicer.vtkSlicerTerminologiesModuleLogic(), "Terminologies", terms),
        segmentations_logic=register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations"),
        subject_hierarchy_logic=register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy"),
    )
