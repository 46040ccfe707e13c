"""VoxTell's text path: a tiny random Qwen3 model stands in for Qwen3-Embedding-4B."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("voxtell", reason="the optional voxtell package is not installed (pip install 'textseg[voxtell]')")

import torch  # noqa: E402

from _voxtell_helpers import ct_like, make_model_folder, make_tiny_qwen  # noqa: E402
from TextSegLib.errors import ModelError  # noqa: E402
from TextSegLib.models.voxtell import load_voxtell_engine  # noqa: E402
from TextSegLib.models.voxtell.text import QwenEncoder, bank_text  # noqa: E402
from TextSegLib.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = make_model_folder(tmp_path_factory.mktemp("voxtell-text"))
    make_tiny_qwen(f / "text_encoder")
    return f


def test_bank_hits_skip_the_encoder_misses_load_it_once_and_are_cached(folder):
    from TextSegLib.models.voxtell import text as text_mod

    text_mod._ENCODERS.clear()
    eng = load_voxtell_engine(folder, device="cpu")
    eng.presence = None
    vol = Volume(ct_like(), np.eye(4), "ct")
    r = eng.segment(vol, ["liver", "left kidney"])
    assert eng.embeddings.encoder.model is None and r.info["embeddings"]["encoded"] == 0  # lazy: not loaded
    r = eng.segment(vol, ["hepatic lesion in segment", "liver"])
    enc = eng.embeddings.encoder
    assert enc.loads == 1 and r.info["embeddings"]["encoded"] == 1
    assert r.prompts["hepatic lesion in segment"].concept is None  # free text, no organ's code
    files = list((folder / "text-cache").glob("*.npy"))
    assert len(files) == 1
    vec = np.load(files[0])
    # the same vector as voxtell's own embedding of that text with this encoder
    from voxtell.inference.predictor import VoxTellPredictor

    pkg = object.__new__(VoxTellPredictor)
    pkg.device, pkg.embedding_bank, pkg.tokenizer, pkg.text_backbone = torch.device("cpu"), None, None, None
    pkg._text_encoding_model, pkg.max_text_length = str(folder / "text_encoder"), 8192
    ref = pkg.embed_text_prompts(["hepatic lesion in segment"])[0, 0].numpy()
    np.testing.assert_allclose(vec, ref, rtol=1e-5, atol=1e-5)
    # a new engine process-wide: cache hit, encoder not called again
    eng2 = load_voxtell_engine(folder, device="cpu")
    eng2.presence = None
    r2 = eng2.segment(vol, ["hepatic lesion in segment"])
    assert r2.info["embeddings"]["cache"] == 1 and r2.info["embeddings"]["encoded"] == 0 and enc.loads == 1


def test_coded_prompt_is_sent_as_name_then_bank_synonym(folder):
    from TextSegLib.knowledge.resolved import resolve_prompt

    p = resolve_prompt("lt kidney", modality="ct")
    assert bank_text(p, {"left kidney"}) == "left kidney"
    syn = [s for s in p.concept.synonyms if s.lower() != p.concept.name.lower()]
    if syn:
        assert bank_text(p, {syn[0].lower()}) == syn[0].lower()
    assert bank_text(p, set()) == p.concept.name.lower()


def test_missing_encoder_is_one_line(tmp_path):
    enc = QwenEncoder(tmp_path / "none", torch.device("cpu"))
    with pytest.raises(ModelError) as e:
        enc.encode(["anything"])
    assert "--text-encoder" in str(e.value) and "\n" not in str(e.value)
