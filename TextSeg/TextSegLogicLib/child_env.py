"""How the module starts its child processes (engine, downloads): environment and window.

Environment. Slicer's launcher (CTK AppLauncher, configured by Slicer's
``SuperBuild/External_python.cmake`` and ``python_configure_python_launcher.cmake``)
puts ``PYTHONHOME``, ``PYTHONNOUSERSITE=1``, Slicer's ``PYTHONPATH`` and library paths
into the environment of Slicer and of everything it starts. The rule here:

* **Slicer's own interpreter** (the setting is empty, or names ``sys.executable`` =
  ``PythonSlicer``, or a program inside Slicer's Python home ``sys.prefix``, such as
  ``python-real``): the child gets Slicer's environment, ``os.environ``. ``python-real``
  needs exactly those values to find its standard library and libraries;
  ``PythonSlicer`` sets the same values again from its launcher settings.
* **Any other interpreter** (the "Engine Python" in Settings): the child starts from
  ``slicer.util.startupEnvironment()``, the environment Slicer itself was started
  with, as Slicer's ``slicer.util.launchConsoleProcess`` does; Slicer's
  ``PYTHONHOME`` would make that interpreter load Slicer's standard library and crash.
  Outside Slicer (no ``slicer.app``), ``os.environ`` is the user's own and is used.

Either way TextSeg adds only what it needs: its library first on ``PYTHONPATH``, and
the variables the caller names (token, ``HF_HUB_OFFLINE``, thread counts).

Window. On Windows the child's console is hidden with the STARTUPINFO that
``launchConsoleProcess`` uses (``STARTF_USESHOWWINDOW``, ``SW_HIDE``): a visible console
that the user closes would kill the engine. On POSIX the child gets its own session
(process group), so :func:`~.proctree.kill_tree` can end the launcher and the
interpreter it started together.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable, Mapping

STARTF_USESHOWWINDOW = 0x00000001  # WinBase.h
SW_HIDE = 0  # WinUser.h


def uses_slicer_environment(python: str) -> bool:
    """True when ``python`` is this application's own interpreter (see the module docstring).

    Paths are compared as written (absolute, not resolved): a venv's ``python`` is a symlink
    to the same binary as its base interpreter, yet it is another interpreter."""
    if not python:
        return True
    path, home = os.path.abspath(python), os.path.abspath(sys.prefix)
    return path == os.path.abspath(sys.executable) or path.startswith(home + os.sep)


def startup_environment() -> dict[str, str] | None:
    """``slicer.util.startupEnvironment()`` inside the Slicer application, else None."""
    try:
        import slicer.util
    except ImportError:
        return None
    get = getattr(slicer.util, "startupEnvironment", None)
    if get is None:
        return None
    try:  # PyPI slicer-core has slicer.util but no slicer.app
        env = get()
    except Exception:
        return None
    return {str(k): str(v) for k, v in dict(env).items()}


def child_environment(python: str, lib_parent: str | os.PathLike, extra: Mapping[str, str] = (),
                      defaults: Mapping[str, str] = ()) -> dict[str, str]:
    """The environment for a child run by ``python``: base (see above), ``lib_parent`` first on
    PYTHONPATH, then ``extra`` (overrides) and ``defaults`` (only where unset)."""
    base = None if uses_slicer_environment(python) else startup_environment()
    env = dict(os.environ) if base is None else base
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(lib_parent)]
    env["PYTHONPATH"] = os.pathsep.join([str(lib_parent)] + rest)
    env.update(dict(extra))
    for k, v in dict(defaults).items():
        env.setdefault(k, v)
    return env


def hidden_startupinfo(factory: Callable[[], Any] | None = None) -> Any:
    """A Windows STARTUPINFO that hides the child's console (``launchConsoleProcess``'s flags)."""
    info = (factory or subprocess.STARTUPINFO)()  # type: ignore[attr-defined]
    info.dwFlags |= STARTF_USESHOWWINDOW
    info.wShowWindow = SW_HIDE
    return info


def popen_options(windows: bool | None = None, startupinfo_factory: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen`` of a child that :func:`~.proctree.kill_tree` ends."""
    if os.name == "nt" if windows is None else windows:
        return {"startupinfo": hidden_startupinfo(startupinfo_factory)}
    return {"start_new_session": True}
