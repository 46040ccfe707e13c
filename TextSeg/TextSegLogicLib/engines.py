"""The model selector's choices, mapped to TextSegLib engines.

Local models come from the model catalog (``TextSegLib.models.catalog.load_engine``);
the remote server from ``TextSegLib.remote``. A choice that this installation
cannot provide raises a :class:`ModelError` saying what is missing (the panel
greys it out with that text as tooltip).
"""
from __future__ import annotations

import importlib

from TextSegLib.engine.base import Engine
from TextSegLib.errors import ModelError

#: selector key -> (label, catalog model name or None for the remote server)
CHOICES: dict[str, tuple[str, str | None]] = {
    "bundled": ("Bundled (offline, small)", "textseg-mini"),
    "sat-nano": ("SAT-Nano", "SAT-Nano"),
    "sat-pro": ("SAT-Pro", "SAT-Pro"),
    "remote": ("Remote server", None),
}


def _check(key: str) -> None:
    """Raise :class:`ModelError` when ``key`` cannot be loaded here."""
    if key not in CHOICES:
        raise ModelError(f"Unknown model choice {key!r}.", f"Use one of: {', '.join(CHOICES)}.")
    label, name = CHOICES[key]
    if name is None:
        try:
            remote = importlib.import_module("TextSegLib.remote")
        except ImportError:
            raise ModelError(f"{label}: TextSegLib.remote is not part of this installation.", "Pick a local model.") from None
        if not hasattr(remote, "RemoteEngine"):
            raise ModelError(f"{label}: this TextSegLib.remote has no RemoteEngine.", "Update TextSeg.")
        return
    try:
        catalog = importlib.import_module("TextSegLib.models.catalog")
    except ImportError as exc:
        raise ModelError(f"{label}: the model catalog cannot be imported ({exc}).",
                         "Install TextSeg's dependencies (first use of the module offers it).") from None
    if key == "bundled":
        try:
            importlib.import_module("TextSegLib.models.bundled").load_bundled_engine  # noqa: B018
        except (ImportError, AttributeError):
            raise ModelError(f"{label}: the bundled model is not part of this installation.", "Pick a SAT model.") from None
    else:
        catalog.model_path(name)  # raises ModelError with the download instructions


def available(key: str) -> tuple[bool, str]:
    """(usable, reason) for the model selector's tooltips."""
    try:
        _check(key)
    except ModelError as exc:
        return False, str(exc)
    return True, ""


def make_engine(key: str, device: str = "auto", model_dir: str = "", url: str = "", api_key: str = "") -> Engine:
    """Build the engine for a selector key with the panel's settings."""
    _check(key)
    label, name = CHOICES[key]
    if name is None:
        from TextSegLib.remote import RemoteEngine  # type: ignore[attr-defined]

        engine = RemoteEngine(url, api_key=api_key or None)
    else:
        from TextSegLib.models.catalog import load_engine

        engine = load_engine(name, path=model_dir or None, device=device or "auto")
    if not isinstance(engine, Engine):
        raise ModelError(f"{label}: the loader did not return an Engine.")
    return engine
