"""SAT text encoder: BioLORD-2023-C MPNet tower -> mean pooling ->
``projection_layer`` (Linear, GELU, Linear) -> ``+ modality_embed[modality]``.

Tokenisation follows the reference exactly: ``['[CLS]'] + tokenize(text) +
['[SEP]']`` converted with ``convert_tokens_to_ids``, truncated to 256 ids
(the last one set to the ``[SEP]`` id), zero-padded to the batch maximum,
``attention_mask = ids > 0``. Prompts are lower-cased first, as the reference
inference dataset does. Tokenizer files are read offline from a local folder
(``tokenizer_dir`` or env ``TEXTSEG_SAT_TOKENIZER``) or the Hugging Face cache.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from ...errors import ModelError, TerminologyError
from .checkpoint import TEXT_IGNORED_SUFFIXES, LoadReport, StateDictLike, strict_load
from .decoder import mlp2

TOKENIZER_REPO = "FremyCompany/BioLORD-2023-C"
MAX_TOKENS = 256
#: modality string -> row of ``modality_embed`` (main-branch SAT checkpoints).
MODALITY_INDEX: dict[str, int] = {"ct": 0, "mri": 1, "us": 2, "pet": 3}
MPNET_CONFIG: dict[str, object] = dict(
    vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", max_position_embeddings=514,
    relative_attention_num_buckets=32, layer_norm_eps=1e-05, pad_token_id=1, bos_token_id=0,
    eos_token_id=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02,
)


def normalize_modality(modality: str) -> str:
    """Map a free modality string to 'ct' | 'mri' | 'us' | 'pet' (reference substring rules)."""
    m = (modality or "").strip().lower()
    if any(s in m for s in ("t1", "t2", "mri", "mr", "flair", "dwi")):
        m = "mri"
    elif "ct" in m:
        m = "ct"
    elif "pet" in m:
        m = "pet"
    if m not in MODALITY_INDEX:
        raise TerminologyError(f"Modality {modality!r} is not known to the SAT text encoder.",
                               f"Use one of {sorted(MODALITY_INDEX)} (e.g. --modality ct).")
    return m


def modality_index(modality: str) -> int:
    return MODALITY_INDEX[normalize_modality(modality)]


class _Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from transformers import MPNetConfig, MPNetModel

        self.biolord = MPNetModel(MPNetConfig(**MPNET_CONFIG), add_pooling_layer=True)


class SATTextEncoder(nn.Module):
    """``encode(texts, modality) -> (N, 768)`` queries for SAT."""

    dim = 768

    def __init__(self, tokenizer_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.text_tower = _Tower()
        self.projection_layer = mlp2(768, 768, 768, final_act=False)
        self.modality_embed = nn.Embedding(len(MODALITY_INDEX), 768)
        self.tokenizer_dir = tokenizer_dir
        self._tokenizer = None

    def encode_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   modality_index: torch.Tensor) -> torch.Tensor:
        """Queries (B, 768) from token ids (B, L), mask (B, L) and modality rows (B,)."""
        hidden = self.text_tower.biolord(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.projection_layer(pooled) + self.modality_embed.weight[modality_index]

    def tokenizer(self):
        """The BioLORD tokenizer, loaded lazily and offline."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            src = self.tokenizer_dir or os.environ.get("TEXTSEG_SAT_TOKENIZER") or TOKENIZER_REPO
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"Tokenizer files for the SAT text encoder were not found at {str(src)!r} ({type(exc).__name__}).",
                    f"On a machine with internet run `huggingface-cli download {TOKENIZER_REPO}` "
                    "(or copy its tokenizer/vocab files into a folder) and set TEXTSEG_SAT_TOKENIZER "
                    "to that folder.",
                ) from None
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention_mask), both int64 (B, L), exactly as the reference builds them."""
        tok = self.tokenizer()
        sep = tok.convert_tokens_to_ids("[SEP]")
        rows = []
        for text in texts:
            ids = tok.convert_tokens_to_ids(["[CLS]"] + tok.tokenize(text.lower()) + ["[SEP]"])
            if len(ids) > MAX_TOKENS:
                ids = ids[:MAX_TOKENS]
                ids[-1] = sep
            rows.append(ids)
        width = max(len(r) for r in rows)
        out = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out, (out > 0).long()

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], modality: str, batch_size: int = 64) -> torch.Tensor:
        """Queries (N, 768) float32 for ``texts`` imaged with ``modality``."""
        texts = list(texts)
        if not texts:
            return torch.zeros((0, self.dim))
        bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise TerminologyError(f"Prompts must be non-empty strings; got {bad[:3]!r}.",
                                   "Type an anatomy or lesion term such as 'liver'.")
        index = modality_index(modality)
        device = self.modality_embed.weight.device
        chunks = []
        for i in range(0, len(texts), batch_size):
            ids, mask = self.tokenize(texts[i:i + batch_size])
            mods = torch.full((ids.shape[0],), index, dtype=torch.long, device=device)
            chunks.append(self.encode_ids(ids.to(device), mask.to(device), mods).float().cpu())
        return torch.cat(chunks)


def build_sat_text_encoder(tokenizer_dir: str | os.PathLike | None = None) -> SATTextEncoder:
    """The SAT text encoder (random weights, eval mode); load with :func:`load_text_encoder_checkpoint`."""
    return SATTextEncoder(tokenizer_dir).eval()


def load_text_encoder_checkpoint(encoder: SATTextEncoder, path_or_state_dict: StateDictLike) -> LoadReport:
    """Strict load of ``text_encoder.pth``; only the legacy ``position_ids`` buffer is tolerated."""
    return strict_load(encoder, path_or_state_dict, ignore_suffixes=TEXT_IGNORED_SUFFIXES, what="SAT text encoder")
