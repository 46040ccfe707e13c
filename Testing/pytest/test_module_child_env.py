"""An "Engine Python" of the user's gets Slicer's startup environment, not the launcher's.

Inside Slicer, ``os.environ`` carries what the launcher set for Slicer's own Python
(``PYTHONHOME``, ``PYTHONNOUSERSITE=1``; Slicer ``SuperBuild/External_python.cmake``). The
stand-in here: ``slicer.app.startupEnvironment()`` (``qSlicerCoreApplication``, which
returns ``ctkAppLauncherEnvironment::environment(0)``, the environment before the launcher)
answers with the environment the test started in, read through PyPI slicer-core's own
copy of Slicer's ``slicer.util.startupEnvironment``; then ``os.environ`` is polluted
with a ``PYTHONHOME`` pointing to an empty folder. An external interpreter (a venv
of its own, seeing this venv's packages through a ``.pth`` file) must still start the
engine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest

from _module_helpers import ROOT  # noqa: F401 - puts TextSeg/ on the path

from TextSegLogicLib.child_env import child_environment, popen_options, uses_slicer_environment  # noqa: E402
from TextSegLogicLib.engine_process import LIB_PARENT, EngineConfig, EngineProcess  # noqa: E402


class _QProcessEnvironment:
    """What ``slicer.app.startupEnvironment()`` returns: ``keys()`` and ``value(key)``."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = dict(env)

    def keys(self) -> list[str]:
        return list(self._env)

    def value(self, key: str) -> str:
        return self._env[key]


@pytest.fixture
def inside_slicer(monkeypatch, tmp_path):
    """slicer.app with a startup environment, and os.environ as Slicer's launcher leaves it."""
    slicer = pytest.importorskip("slicer", reason="PyPI slicer-core provides slicer.util.startupEnvironment")
    import slicer.util

    assert hasattr(slicer.util, "startupEnvironment")
    startup = dict(os.environ)
    startup.pop("PYTHONHOME", None)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(startupEnvironment=lambda: _QProcessEnvironment(startup)),
                        raising=False)
    home = tmp_path / "Slicer-5.10.0" / "lib" / "Python"  # no standard library there
    home.mkdir(parents=True)
    monkeypatch.setenv("PYTHONHOME", str(home))
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    monkeypatch.setenv("TEXTSEG_TEST_SLICER_ONLY", "1")
    return home


@pytest.fixture(scope="module")
def external_python(tmp_path_factory) -> str:
    """A second interpreter: a venv of its own that sees this venv's packages via a .pth file."""
    folder = tmp_path_factory.mktemp("external") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, env=env)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, env=env).stdout.strip()
    Path(purelib, "textseg-test-host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(python)


def test_engine_starts_on_an_external_python_inside_slicer(inside_slicer, external_python, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    process = EngineProcess(EngineConfig(model="textseg-mini", device="cpu", python=external_python))
    try:
        process.wait_ready(120)
        assert process.client().info(refresh=True)["model"]
    finally:
        process.stop()


def test_which_environment_each_interpreter_gets(inside_slicer, external_python):
    home = str(inside_slicer)
    for own in ("", sys.executable, str(Path(sys.prefix) / "bin" / "python-real")):
        assert uses_slicer_environment(own), own
        env = child_environment(own, LIB_PARENT, {"TEXTSEG_API_KEY": "k"})
        assert env["PYTHONHOME"] == home and env["TEXTSEG_TEST_SLICER_ONLY"] == "1"  # python-real needs them
    assert not uses_slicer_environment(external_python)
    env = child_environment(external_python, LIB_PARENT, {"TEXTSEG_API_KEY": "k"}, {"HF_HUB_OFFLINE": "1"})
    assert "PYTHONHOME" not in env and "TEXTSEG_TEST_SLICER_ONLY" not in env and "PYTHONNOUSERSITE" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(LIB_PARENT)
    assert env["TEXTSEG_API_KEY"] == "k" and env["PATH"] == os.environ["PATH"]


def test_outside_slicer_the_environment_is_the_users(monkeypatch, external_python):
    monkeypatch.setenv("TEXTSEG_TEST_USER_VAR", "1")
    env = child_environment(external_python, LIB_PARENT)  # no slicer.app: os.environ is the user's own
    assert env["TEXTSEG_TEST_USER_VAR"] == "1"


def test_windows_console_is_hidden_like_launch_console_process():
    opts = popen_options(windows=True, startupinfo_factory=lambda: types.SimpleNamespace(dwFlags=0, wShowWindow=1))
    assert set(opts) == {"startupinfo"}
    assert opts["startupinfo"].dwFlags == 1 and opts["startupinfo"].wShowWindow == 0  # STARTF_USESHOWWINDOW, SW_HIDE
