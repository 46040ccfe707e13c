"""VoxTell's prompts: the embedding bank, the lazy Qwen3 text encoder and its disk cache.

* **Bank** (``text_embeddings.npz``, the format of ``voxtell.utils.embedding_bank``): two
  arrays, ``labels`` (prompt strings) and ``embeddings`` (float16, ``(N, 2560)``), read
  with ``allow_pickle=False``; keys are lower case, as VoxTell lower-cases every prompt.
* **Prompt → text**: a coded prompt is sent as its concept's preferred name when the bank
  holds it, else the first of its synonyms the bank holds, else the preferred name;
  free text is sent as typed (lower case).
* **Encoder** (a local Qwen3-Embedding folder, never the hub): loaded once per process on
  the first bank miss, bf16 on CUDA, float32 on CPU; prompts are wrapped with VoxTell's
  instruction and last-token pooled (``voxtell.utils.text_embedding``), as its predictor does.
* **Cache**: every encoded text is stored under ``<model folder>/text-cache/`` (else
  ``$TEXTSEG_HOME/cache/voxtell/``), keyed by the model version, the encoder and the text.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import ModelError
from .checkpoint import TEXT_DIM

BANK = "text_embeddings.npz"
ENCODER_DIR = "text_encoder"
ENCODER_REPO = "Qwen/Qwen3-Embedding-4B"
CACHE_DIR = "text-cache"


def bank_file(folder: Path) -> Path | None:
    """The bank of a model folder (``text_embeddings.npz`` or ``embeddings/*.npz``), if any."""
    p = Path(folder) / BANK
    if p.is_file():
        return p
    found = sorted((Path(folder) / "embeddings").glob("**/*.npz")) if (Path(folder) / "embeddings").is_dir() else []
    return found[0] if found else None


def bank_labels(path: Path) -> list[str]:
    """The prompt strings of a bank, without reading its vectors (for ``textseg terms``)."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return [str(v).lower() for v in data["labels"]]
    except Exception as exc:  # not an npz, pickled labels, no 'labels'
        raise ModelError(f"{path}: not a VoxTell embedding bank ({type(exc).__name__}: {str(exc)[:120]}).",
                         "It must be an .npz with 'labels' and 'embeddings' arrays; download it again.") from None


def load_bank(path: Path) -> dict[str, np.ndarray]:
    """``{lower-case prompt: float16 vector}`` of a bank file."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            labels, emb = data["labels"], data["embeddings"]
    except Exception as exc:
        raise ModelError(f"{path}: not a VoxTell embedding bank ({type(exc).__name__}: {str(exc)[:120]}).",
                         "It must be an .npz with 'labels' and 'embeddings' arrays; download it again.") from None
    if emb.ndim != 2 or emb.shape[0] != len(labels) or emb.shape[1] != TEXT_DIM:
        raise ModelError(f"{path}: embeddings have shape {emb.shape}; VoxTell needs ({len(labels)}, {TEXT_DIM}).",
                         "Use the bank released with the VoxTell model.")
    return {str(label).lower(): emb[i] for i, label in enumerate(labels)}


def bank_text(prompt, bank: dict | set) -> str:
    """The text VoxTell is sent for a resolved prompt (see the module docstring)."""
    concept = getattr(prompt, "concept", None)
    if concept is None:
        return str(getattr(prompt, "term", None) or getattr(prompt, "text", prompt)).strip().lower()
    for name in (concept.name, *concept.synonyms):
        if name.lower() in bank:
            return name.lower()
    return concept.name.lower()


def bank_concepts(labels: Sequence[str]) -> list[str]:
    """Bank labels that name a knowledge-tree concept by its preferred name or a synonym."""
    from ...knowledge.tree import default_tree

    tree = default_tree()
    names = {c.name.lower() for c in tree.concepts} | {s.lower() for c in tree.concepts for s in c.synonyms}
    return [t for t in labels if t in names]


def bank_coverage(labels: Sequence[str]) -> tuple[int, int]:
    """``(concepts of the knowledge tree with a bank embedding, concepts in the tree)``."""
    from ...knowledge.tree import default_tree

    tree = default_tree()
    keys = set(labels)
    hit = sum(1 for c in tree.concepts if any(n.lower() in keys for n in (c.name, *c.synonyms)))
    return hit, len(tree.concepts)


# -- the text encoder ---------------------------------------------------------------------
_ENCODERS: dict[tuple[str, str], "QwenEncoder"] = {}
_LOCK = threading.Lock()


class QwenEncoder:
    """A local Qwen3-Embedding model (a folder with ``config.json`` and a tokenizer), lazily loaded."""

    def __init__(self, folder: Path, device) -> None:
        self.folder = Path(folder)
        self.device = device
        self.tokenizer = None
        self.model = None
        self.loads = 0

    @classmethod
    def shared(cls, folder: Path, device) -> "QwenEncoder":
        """One encoder per (folder, device) in this process."""
        key = (str(Path(folder).resolve()), str(device))
        with _LOCK:
            if key not in _ENCODERS:
                _ENCODERS[key] = cls(Path(folder), device)
            return _ENCODERS[key]

    @property
    def version(self) -> str:
        """Identity of the encoder's weights for the cache key (its config.json's hash)."""
        try:
            return hashlib.sha256((self.folder / "config.json").read_bytes()).hexdigest()[:16]
        except OSError:
            return "none"

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not (self.folder / "config.json").is_file():
            raise ModelError(f"The VoxTell text encoder is not installed ({self.folder} has no config.json); "
                             "prompts outside the embedding bank need it.",
                             f"Run `textseg models pull VoxTell --text-encoder` ({ENCODER_REPO}, about 8 GB), "
                             "or use a prompt from `textseg terms --model VoxTell` (* = in the bank).")
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), padding_side="left", local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.folder), dtype=dtype, local_files_only=True).eval()
        self.model.to(self.device)
        self.loads += 1

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` float32 embeddings of ``texts`` (VoxTell's instruction wrapping and pooling)."""
        import torch
        from voxtell.utils.text_embedding import last_token_pool, wrap_with_instruction

        with _LOCK:
            if self.model is None:
                self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                chunk = list(texts[start:start + 32])
                tok = self.tokenizer(wrap_with_instruction(chunk), padding=True, truncation=True,
                                     max_length=8192, return_tensors="pt")
                tok = {k: v.to(self.device) for k, v in tok.items()}
                hidden = self.model(**tok).last_hidden_state
                out.append(last_token_pool(hidden, tok["attention_mask"]).float().cpu().numpy())
        emb = np.concatenate(out, 0)
        if emb.shape[1] != TEXT_DIM:
            raise ModelError(f"{self.folder}: the text encoder gives {emb.shape[1]}-d embeddings; VoxTell needs "
                             f"{TEXT_DIM}.", f"Use {ENCODER_REPO}.")
        return emb


class PromptEmbeddings:
    """Embeddings for VoxTell texts: the bank first, then the disk cache, then the encoder."""

    def __init__(self, bank: dict[str, np.ndarray], encoder: QwenEncoder, model_version: str,
                 cache_dir: Path | None) -> None:
        self.bank = bank
        self.encoder = encoder
        self.model_version = model_version
        self.cache_dir = cache_dir
        self.stats = {"bank": 0, "cache": 0, "encoded": 0}

    def _key(self, text: str) -> str:
        raw = json.dumps([self.model_version, self.encoder.version, text])
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def _cached(self, text: str) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        p = self.cache_dir / f"{self._key(text)}.npy"
        try:
            v = np.load(str(p), allow_pickle=False)
        except (OSError, ValueError):
            return None
        return v if v.shape == (TEXT_DIM,) else None

    def _store(self, text: str, vec: np.ndarray) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            p = self.cache_dir / f"{self._key(text)}.npy"
            tmp = p.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, vec.astype(np.float32), allow_pickle=False)
            tmp.replace(p)
        except OSError:  # a read-only folder: the cache is an optimisation only
            pass

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, 2560)`` float32 vectors for ``texts`` (lower case, as VoxTell sends them)."""
        rows: dict[str, np.ndarray] = {}
        todo = []
        for t in dict.fromkeys(texts):
            if t in self.bank:
                rows[t] = np.asarray(self.bank[t], dtype=np.float32)
                self.stats["bank"] += 1
            elif (v := self._cached(t)) is not None:
                rows[t] = v.astype(np.float32)
                self.stats["cache"] += 1
            else:
                todo.append(t)
        if todo:
            for t, v in zip(todo, self.encoder.encode(todo)):
                rows[t] = v
                self._store(t, v)
                self.stats["encoded"] += 1
        return np.stack([rows[t] for t in texts])
