"""The one engine interface every model (and the remote client) implements.

``segment(volume, prompts, ...)`` returns one mask and one probability map
per prompt, **on the source volume's grid**, and says per prompt whether the
structure was found. Prompts are :class:`~TextSegLib.knowledge.resolved.ResolvedPrompt`
values (resolved once by the caller; the engine queries with ``prompt.term``
and keys everything by ``prompt.text``); plain strings are resolved by the
engine through the same function. Long work reports progress
through ``progress(stage, done, total)`` and checks ``cancel`` between units
of work (tiles), raising :class:`~TextSegLib.errors.CancelledError`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import CancelledError
from ..volume import Volume

#: ``progress(stage, done, total)``; stage is a short word such as
#: "preprocess", "encode", "tiles", "postprocess".
ProgressCallback = Callable[[str, int, int], None]


class CancelToken:
    """Thread-safe cancellation flag shared by a GUI and a worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`CancelledError` if cancellation was requested."""
        if self._event.is_set():
            raise CancelledError("Segmentation cancelled by the user.")


@dataclass
class EngineResult:
    """Masks and probabilities keyed by prompt text, on the source grid.

    ``masks[p]`` is a bool array with ``volume.shape``; ``probabilities[p]``
    is float (float16 or float32) in [0, 1] of the same shape, or absent when
    the engine has none. ``found[p]`` says whether the structure is there and
    ``reasons[p]`` why (or why not); a not-found prompt has an all-false mask.
    ``prompts[p]`` is the resolved prompt. ``timings`` holds seconds per stage.

    Presence has three states (:meth:`state`): "found", "uncertain" (the mask is kept, but the
    evidence is in between, so a reviewer should look; ``uncertain`` holds these keys) and
    "not found". ``presence[p]`` is the presence probability (0..1) where the presence step
    computed one.
    """

    masks: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    found: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    prompts: dict = field(default_factory=dict)
    uncertain: set = field(default_factory=set)
    presence: dict[str, float] = field(default_factory=dict)

    def is_found(self, key: str) -> bool:
        """``found[key]``, or (engines that do not say) whether the mask has any voxel."""
        if key in self.found:
            return bool(self.found[key])
        return bool(self.masks[key].any())

    def state(self, key: str) -> str:
        """``"found"``, ``"uncertain"`` or ``"not found"``."""
        if not self.is_found(key):
            return "not found"
        return "uncertain" if key in self.uncertain else "found"

    def mark_not_found(self, key: str, reason: str) -> None:
        """Record ``key`` as not found: empty mask, the reason kept."""
        self.masks[key] = np.zeros_like(self.masks[key], dtype=bool)
        self.found[key] = False
        self.uncertain.discard(key)
        self.reasons[key] = reason

    def mark_uncertain(self, key: str, reason: str) -> None:
        """Record ``key`` as found but uncertain: the mask is kept, the reason says why."""
        self.found[key] = True
        self.uncertain.add(key)
        self.reasons[key] = reason


@runtime_checkable
class Engine(Protocol):
    """What the CLI, the server, the Slicer Logic and the tests call."""

    # Optional attributes the prompt path reads when present (not part of the runtime check):
    # ``free_text`` (text outside the vocabulary can be encoded; default True) and
    # ``modalities`` (the modalities it was trained on; default: any).
    name: str

    def vocabulary(self, modality: str) -> list[str]:
        """Terms this engine was trained on for ``modality`` ('ct', 'mri', 'pet')."""
        ...

    def segment(
        self,
        volume: Volume,
        prompts: Sequence,  # ResolvedPrompt or str
        *,
        modality: str | None = None,
        roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> EngineResult:
        ...
