"""The model selector's choices: what each needs, what it knows, and how to run it.

Local models ("bundled", "sat-nano", "sat-pro", "voxtell") run in the engine process
(:mod:`.engine_process`, ``textseg serve`` on loopback); "remote" is a server the user
names. :func:`describe` gives a model's vocabulary, free-text ability and modalities from
its files, without loading it, so prompts are resolved (and the completer marks the
model's own terms) before any model work. A choice this installation cannot provide
raises a :class:`ModelError` saying what is missing (the panel greys it out with that
text as tooltip).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from TextSegLib.errors import ModelError

#: selector key -> (label, catalog model name or None for the remote server)
CHOICES: dict[str, tuple[str, str | None]] = {
    "bundled": ("Bundled (offline, small)", "textseg-mini"),
    "sat-nano": ("SAT-Nano", "SAT-Nano"),
    "sat-pro": ("SAT-Pro", "SAT-Pro"),
    "voxtell": ("VoxTell (non-commercial)", "VoxTell"),
    "remote": ("Remote server", None),
}
DEFAULT_CHOICE = "bundled"
LOCAL = tuple(k for k, (_, name) in CHOICES.items() if name is not None)
#: local choices whose weights the panel's Download button fetches (``textseg models pull``)
DOWNLOADABLE = ("sat-nano", "sat-pro", "voxtell")


@dataclass
class ModelDescription:
    """What :func:`~TextSegLib.knowledge.resolved.engine_resolution_args` reads from an engine."""

    name: str
    free_text: bool
    terms: dict[str, list[str]] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...] | None:
        known = tuple(m for m in ("ct", "mri", "pet") if self.terms.get(m))
        return known or None

    def vocabulary(self, modality: str) -> list[str]:
        return list(self.terms.get(modality, []))


def _bundled_folder(model_dir: str = "") -> Path:
    from TextSegLib.resources import resource_path

    return Path(model_dir).expanduser() if model_dir else resource_path("models", "textseg-mini")


def model_folder(key: str, model_dir: str = "") -> Path:
    """The folder a local choice loads from: the "Model folder" setting, else the installed one."""
    if key not in LOCAL:
        raise ModelError(f"{key!r} is not a local model.", f"Use one of: {', '.join(LOCAL)}.")
    if model_dir:
        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            raise ModelError(f"Model folder {folder} does not exist.", "Choose the folder that holds the model files.")
        return folder
    if key == "bundled":
        return _bundled_folder()
    from TextSegLib.models.catalog import model_path

    return model_path(CHOICES[key][1])  # raises ModelError with the download instructions


def describe(key: str, model_dir: str = "") -> ModelDescription:
    """A local model's vocabulary per modality and whether it encodes free text (no loading)."""
    label, name = CHOICES[key]
    if key == "bundled":
        cfg_file = model_folder(key, model_dir) / "config.json"
        try:
            concepts = json.loads(cfg_file.read_text(encoding="utf-8"))["concepts"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{label}: cannot read {cfg_file} ({exc}).", "Reinstall the TextSeg extension.") from None
        return ModelDescription(str(name), False, {m: list(v) for m, v in concepts.items()})
    if key == "voxtell":  # the embedding bank's prompts (none before the download); any text is encoded
        from TextSegLib.models.catalog import model_vocabulary

        _, terms, _ = model_vocabulary(path=model_dir) if model_dir else model_vocabulary(str(name))
        return ModelDescription(str(name), True, {m: list(v) for m, v in terms.items()})
    from TextSegLib.models.catalog import sat_vocabulary

    return ModelDescription(str(name), True, sat_vocabulary())


def check(key: str, model_dir: str = "") -> None:
    """Raise :class:`ModelError` when ``key`` cannot be used here (files missing, unknown key)."""
    if key not in CHOICES:
        raise ModelError(f"Unknown model choice {key!r}.", f"Use one of: {', '.join(CHOICES)}.")
    if key == "remote":
        return
    folder = model_folder(key, model_dir)
    if key == "bundled" and not (folder / "config.json").is_file():
        raise ModelError(f"{CHOICES[key][0]}: {folder} holds no textseg-mini model (config.json).",
                         "Clear the Model folder field, or choose a folder written by `textseg train`.")
    if key == "voxtell" and model_dir:
        from TextSegLib.models.catalog import describe_folder, get_entry

        describe_folder(folder, get_entry("VoxTell"))  # plans.json + fold_0/checkpoint_final.pth, else one line


def available(key: str, model_dir: str = "") -> tuple[bool, str]:
    """(usable, reason) for the model selector's tooltips."""
    try:
        check(key, model_dir)
    except ModelError as exc:
        return False, str(exc)
    return True, ""


def default_choice(availability: dict[str, tuple[bool, str]]) -> str:
    """The bundled model when usable, else the first usable local model, else the bundled one
    (never the remote server: it needs an address the user types)."""
    for key in (DEFAULT_CHOICE, *LOCAL):
        if availability.get(key, (False, ""))[0]:
            return key
    return DEFAULT_CHOICE
