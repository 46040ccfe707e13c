"""A stand-in for Slicer's ``PythonSlicer``: CTK's application launcher in front of ``python-real``.

What it copies from commontk/AppLauncher ``Base/ctkAppLauncher.cpp`` (``runProcess``,
``applicationFinished``; the launcher Slicer v5.10.0 builds, configured by
``SuperBuild/python_configure_python_launcher.cmake``):

* it starts the real interpreter as its **child** (a ``QProcess``, not ``exec``), with
  the launcher's standard streams forwarded (``ForwardedChannels``,
  ``ForwardedInputChannel``);
* it adds its settings' variables to the child's environment (here: ``PYTHONNOUSERSITE=1``
  and a marker, ``TEXTSEG_TEST_LAUNCHED=1``; the real one also sets ``PYTHONHOME`` and
  library paths, which would break this test's interpreter, so they are left out);
* it installs **no** signal handler and forwards nothing to the child; when the child
  ends it exits with the child's code;
* it outlives its own parent (no death signal).

By default it also **ignores SIGTERM** (``--mode ignore``), the harder case the engine's
stop must handle: whatever signals only the launcher PID leaves everything running.
``--mode default`` keeps SIGTERM's default action, as the real launcher does: the launcher
dies alone and the interpreter is orphaned.

    python _ctk_launcher.py [--mode ignore|default] ARGS...  ->  runs  sys.executable ARGS...

:func:`write_launcher` makes an executable ``PythonSlicer`` in a folder that runs this
(``exec``: the launcher keeps the PID the caller started).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys


def write_launcher(folder: "os.PathLike[str] | str", mode: str = "ignore") -> str:
    """An executable ``PythonSlicer`` in ``folder`` that runs this launcher; returns its path."""
    path = os.path.join(os.fspath(folder), "PythonSlicer")
    with open(path, "w") as fh:
        fh.write(f"#!/bin/sh\nexec '{sys.executable}' '{os.path.abspath(__file__)}' --mode {mode} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def main(argv: list[str]) -> int:
    mode = "ignore"
    if argv[:1] == ["--mode"]:
        mode, argv = argv[1], argv[2:]
    if mode == "ignore":  # a handler, not SIG_IGN: exec resets handlers, so the child keeps SIGTERM's default
        signal.signal(signal.SIGTERM, lambda *_: None)
    env = dict(os.environ, PYTHONNOUSERSITE="1", TEXTSEG_TEST_LAUNCHED="1")
    child = subprocess.Popen([os.environ.get("TEXTSEG_TEST_REAL_PYTHON", sys.executable), *argv], env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # pragma: no cover - forwards nothing
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
