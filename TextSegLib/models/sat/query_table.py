"""Cached query embeddings: vocabulary term x modality -> query vector.

The table is computed once per text-encoder checkpoint and stored next to the
weights as a small ``.safetensors`` file keyed by the checkpoint's sha256 (and
the vocabulary), so known terms never run the text tower again. Free text is
encoded on demand (the encoder is created lazily, only then) and memoised in
memory. Any encoder with ``encode(texts, modality) -> Tensor (N, D)`` works
(the SAT MPNet encoder, or the bundled model's MiniLM encoder).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import torch

from ...errors import ModelError, TerminologyError
from .checkpoint import file_sha256

log = logging.getLogger(__name__)
FORMAT = "textseg-query-table/1"


class QueryEncoder(Protocol):
    def encode(self, texts: Sequence[str], modality: str) -> torch.Tensor: ...


def _norm_term(text: str) -> str:
    return " ".join(text.strip().lower().split())


def load_sat_vocabulary(path: str | os.PathLike) -> dict[str, list[str]]:
    """Terms per modality from SAT-DS ``terminology_list.json`` (``"<modality>_<term>"`` under ``all``)."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))["all"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TerminologyError(f"Cannot read the SAT vocabulary {str(path)!r} ({exc}).",
                               "Expected a JSON object with an 'all' list of '<modality>_<term>' strings.") from None
    vocab: dict[str, list[str]] = {}
    for entry in entries:
        modality, _, term = str(entry).partition("_")
        if term:
            vocab.setdefault(modality.lower(), []).append(term)
    return vocab


class QueryTable:
    """``get(texts, modality) -> (N, D)`` float32 queries.

    ``vocabulary``: modality -> terms, or one list of terms used for every
    modality in ``modalities``. ``checkpoint_path``: the text-encoder weights
    whose sha256 keys the cache (``cache_path`` defaults to a file beside it).
    ``normalize_modality`` maps user strings to the encoder's modality names.
    """

    def __init__(self, encoder_factory: Callable[[], QueryEncoder],
                 vocabulary: Mapping[str, Sequence[str]] | Sequence[str],
                 cache_path: str | os.PathLike | None = None, *,
                 checkpoint_path: str | os.PathLike | None = None,
                 modalities: Iterable[str] = ("ct", "mri", "pet"),
                 normalize_modality: Callable[[str], str] = lambda m: m.strip().lower(),
                 encoder_id: str = "") -> None:
        if isinstance(vocabulary, Mapping):
            vocab = {m.lower(): list(dict.fromkeys(_norm_term(t) for t in ts)) for m, ts in vocabulary.items()}
        else:
            terms = list(dict.fromkeys(_norm_term(t) for t in vocabulary))
            vocab = {m: list(terms) for m in modalities}
        self.vocabulary = vocab
        self._factory = encoder_factory
        self._encoder: QueryEncoder | None = None
        self._normalize = normalize_modality
        self._lock = threading.RLock()
        self._tables: dict[str, torch.Tensor] | None = None
        self._rows = {m: {t: i for i, t in enumerate(ts)} for m, ts in vocab.items()}
        self._free: dict[tuple[str, str], torch.Tensor] = {}
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self._encoder_id = encoder_id
        self._cache_arg = Path(cache_path) if cache_path else None
        self.encoder_calls = 0  # number of encode() calls made (for diagnostics/tests)

    # -- keys and paths -------------------------------------------------
    def cache_key(self) -> str:
        """sha256 over the checkpoint hash, the encoder id and the vocabulary."""
        h = hashlib.sha256()
        h.update((file_sha256(self.checkpoint_path) if self.checkpoint_path else "no-checkpoint").encode())
        h.update(self._encoder_id.encode())
        h.update(json.dumps(self.vocabulary, sort_keys=True).encode())
        return h.hexdigest()

    @property
    def cache_path(self) -> Path | None:
        if self._cache_arg is not None:
            return self._cache_arg
        if self.checkpoint_path is None:
            return None
        return self.checkpoint_path.with_name(self.checkpoint_path.name + ".queries.safetensors")

    # -- encoder ---------------------------------------------------------
    def encoder(self) -> QueryEncoder:
        """The text encoder, created on first use."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._factory()
            return self._encoder

    def _encode(self, texts: list[str], modality: str) -> torch.Tensor:
        self.encoder_calls += 1
        out = self.encoder().encode(texts, modality)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(texts):
            raise ModelError(f"The text encoder returned {getattr(out, 'shape', type(out))} for {len(texts)} texts.",
                             "encode(texts, modality) must return a (N, D) tensor.")
        return out.detach().float().cpu()

    # -- table -----------------------------------------------------------
    def _load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self.cache_path
        if path is None or not path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT or meta.get("key") != key:
                    return None
                tables = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            log.warning("Ignoring unreadable query cache %s (%s); recomputing.", path, exc)
            return None
        if any(m not in tables or tables[m].shape[0] != len(ts) for m, ts in self.vocabulary.items()):
            return None
        return tables

    def _save(self, key: str, tables: dict[str, torch.Tensor]) -> None:
        path = self.cache_path
        if path is None:
            return
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file({m: t.contiguous() for m, t in tables.items()}, str(tmp),
                      metadata={"format": FORMAT, "key": key})
            os.replace(tmp, path)
        except (OSError, SafetensorError) as exc:
            log.warning("Could not write the query cache %s (%s); it stays in memory.", path, exc)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def tables(self) -> dict[str, torch.Tensor]:
        """modality -> (len(vocabulary[modality]), D) table, from cache or computed once."""
        with self._lock:
            if self._tables is None:
                key = self.cache_key()
                tables = self._load(key)
                if tables is None:
                    tables = {m: self._encode(ts, m) for m, ts in self.vocabulary.items() if ts}
                    self._save(key, tables)
                self._tables = tables
            return self._tables

    def get(self, texts: Sequence[str], modality: str) -> torch.Tensor:
        """Queries (N, D) for ``texts``; vocabulary terms come from the table."""
        texts = list(texts)
        if not texts:
            raise TerminologyError("No prompts were given.", "Pass at least one anatomy or lesion term.")
        m = self._normalize(modality)
        rows = self._rows.get(m, {})
        out: list[torch.Tensor | None] = [None] * len(texts)
        table = self.tables().get(m) if any(_norm_term(t) in rows for t in texts) else None
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                term = _norm_term(text)
                if not term:
                    raise TerminologyError(f"Prompt {i + 1} is empty.", "Remove it or type a term.")
                if term in rows and table is not None:
                    out[i] = table[rows[term]]
                elif (m, term) in self._free:
                    out[i] = self._free[(m, term)]
                else:
                    missing.append(i)
            if missing:
                unique = list(dict.fromkeys(_norm_term(texts[i]) for i in missing))
                enc = self._encode(unique, m)
                for term, row in zip(unique, enc):
                    self._free[(m, term)] = row
                for i in missing:
                    out[i] = self._free[(m, _norm_term(texts[i]))]
        return torch.stack(out)  # type: ignore[arg-type]


def make_sat_query_table(text_checkpoint: str | os.PathLike, vocabulary: Mapping[str, Sequence[str]] | Sequence[str],
                         cache_path: str | os.PathLike | None = None,
                         tokenizer_dir: str | os.PathLike | None = None) -> QueryTable:
    """QueryTable for SAT: the MPNet encoder is built and loaded from ``text_checkpoint`` only if needed."""
    from .text import build_sat_text_encoder, load_text_encoder_checkpoint, normalize_modality

    def factory() -> QueryEncoder:
        enc = build_sat_text_encoder(tokenizer_dir)
        load_text_encoder_checkpoint(enc, text_checkpoint)
        return enc

    return QueryTable(factory, vocabulary, cache_path, checkpoint_path=text_checkpoint,
                      normalize_modality=normalize_modality, encoder_id="sat-mpnet")
