"""End to end: the bundled textseg-mini model behind a real server equals running it locally."""
from __future__ import annotations

import numpy as np
import pytest

from _remote_helpers import KEY, dice, running_server
from TextSegLib.remote import RemoteEngine

CT = "Testing/Data/totalsegmentator/example_ct_sm.nii.gz"


@pytest.fixture(scope="module")
def engine():
    bundled = pytest.importorskip("TextSegLib.models.bundled")
    try:
        return bundled.load_bundled_engine(threads=1)
    except Exception as exc:  # the bundled weights are an optional part of a checkout
        pytest.skip(f"bundled model unavailable: {exc}")


@pytest.fixture(scope="module")
def crop():
    from pathlib import Path

    from TextSegLib.io import read_volume

    root = Path(__file__).resolve().parents[2]
    vol = read_volume(str(root / CT), modality="ct")
    i0, j0 = 20, 10  # a 64×64 in-plane crop over the liver; origin moved so RAS stays exact
    m = vol.ijk_to_ras.copy()
    m[:3, 3] = vol.ijk_to_ras_points([i0, j0, 0])[0]
    return vol.with_array(np.ascontiguousarray(vol.array[i0:i0 + 64, j0:j0 + 64, :]), ijk_to_ras=m)


def test_remote_bundled_equals_local(engine, crop):
    prompts = ["liver", "spleen"]
    local = engine.segment(crop, prompts)
    with running_server(lambda: engine, api_key=KEY) as url:
        res = RemoteEngine(url, KEY, probabilities=True).segment(crop, prompts)
    assert res.info["engine"] == "textseg-mini"
    for p in prompts:
        assert res.masks[p].shape == crop.shape  # source grid
        assert dice(res.masks[p], local.masks[p]) >= 0.99, p
        assert np.abs(res.probabilities[p].astype(np.float32) - local.probabilities[p].astype(np.float32)).max() < 0.01
    assert local.masks["liver"].sum() > 500  # the crop really contains liver


def test_remote_bundled_without_modality_says_what_to_pass(engine, crop):
    """An upload without a modality on a textseg-mini server: one model-neutral line naming the field."""
    from TextSegLib.errors import TextSegError

    unknown = crop.with_array(crop.array, modality="")
    with running_server(lambda: engine, api_key=KEY) as url:
        with pytest.raises(TextSegError) as err:
            RemoteEngine(url, KEY).segment(unknown, ["liver"])
    text = str(err.value)
    assert "SAT" not in text, text
    assert "modality" in text and "'modality' field" in text and "--modality ct" in text, text
    assert "\n" not in text.strip()
