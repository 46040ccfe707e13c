"""pytest fixtures of the module's logic tests on a real MRML scene (PyPI slicer-core): one scene
per test module, the CTChest4 volume per test, a logic with the lung-threshold engine.
Import them by name into a test module (``from _mrml_fixtures import env, ct, logic``)."""
from __future__ import annotations

import pytest

from _module_helpers import CT_CHEST, LungThresholdEngine


@pytest.fixture(scope="module")
def env():
    from slicer_bootstrap import make_scene

    return make_scene()


@pytest.fixture()
def ct(env):
    node = env.load_volume(CT_CHEST)
    yield node
    env.scene.RemoveNode(node)


@pytest.fixture()
def logic(env):
    from TextSegLogicLib import TextSegLogic

    return TextSegLogic(**env.logics(), engine=LungThresholdEngine())
