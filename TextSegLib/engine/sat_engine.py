"""The SAT engine: a SAT-like model + a query provider behind the Engine protocol.

``SATEngine(model, queries, config).segment(volume, ["liver", "spleen"])``
preprocesses the volume once (optionally cached by a caller key such as
Slicer's ``(node ID, MTime)``), encodes all prompts in one batch, runs the
sliding window with the backbone once per tile, and maps every probability
map back to the SOURCE grid (linear) before thresholding.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Protocol, Sequence

import numpy as np
import torch

from ..errors import ModelError, TerminologyError
from ..volume import Volume, normalize_modality
from .base import CancelToken, EngineResult, ProgressCallback
from .device import autocast_factory, choose_device, resolve_precision
from .preprocess import PreprocessConfig, Preprocessed, preprocess
from .resample import source_mask_from_prob
from .sliding_window import run_sliding_window


class QueryProvider(Protocol):
    """Turns prompt texts into model queries ``(N, D)`` for a modality."""

    def get(self, texts: Sequence[str], modality: str) -> torch.Tensor:
        ...


@dataclass
class InferenceConfig:
    """Everything about how the engine runs the model (not the weights)."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    patch_size: tuple[int, int, int] = (288, 288, 96)
    in_channels: int | None = None  # None: model.config.in_channels, else 3
    threshold: float = 0.5
    device: str = "auto"
    precision: str = "auto"
    skip_empty_tiles: bool = True
    max_queries_per_pass: int = 64
    #: cap on the model-grid probability accumulator (prompts × voxels × 4 bytes)
    max_accumulator_bytes: int = 4 << 30
    default_modality: str = ""  # used when neither the call nor the volume says


class SATEngine:
    """Engine protocol implementation for SAT and SAT-shaped models."""

    #: Presence rules (:mod:`.presence`) applied to every result, or ``None``: only an empty
    #: mask is "not found". Off for SAT (its outputs stay those of the authors' model; the
    #: thresholds were measured on textseg-mini only); the bundled engine sets them.
    presence = None

    @property
    def free_text(self) -> bool:
        """Whether text outside the vocabulary can be encoded (a text tower can, a table cannot)."""
        return bool(getattr(self.queries, "free_text", True))

    def __init__(
        self,
        model: torch.nn.Module,
        queries: QueryProvider,
        config: InferenceConfig | None = None,
        *,
        name: str = "SAT",
        vocabulary: Mapping[str, Sequence[str]] | Callable[[str], Sequence[str]] | None = None,
        cache_size: int = 2,
    ) -> None:
        if not callable(getattr(queries, "get", None)):
            raise ModelError(f"Query provider {type(queries).__name__} has no get(texts, modality) method.")
        self.name = name
        self.model = model
        self.queries = queries
        self.config = config or InferenceConfig()
        self._vocabulary = vocabulary
        self._cache: OrderedDict[Hashable, Preprocessed] = OrderedDict()
        self._cache_size = max(0, int(cache_size))
        self._lock = threading.Lock()
        self.device = choose_device(self.config.device)
        self.dtype = resolve_precision(self.device, self.config.precision)
        self.model.eval().to(self.device)

    # -- protocol ----------------------------------------------------------------
    def vocabulary(self, modality: str) -> list[str]:
        modality = normalize_modality(modality)
        v = self._vocabulary
        if v is None:
            v = getattr(self.queries, "vocabulary", None)
        if v is None:
            return []
        terms = v(modality) if callable(v) else v.get(modality, [])
        return list(terms)

    @property
    def modalities(self) -> tuple[str, ...] | None:
        """Modalities the model was trained on (``None``: no vocabulary, so unknown)."""
        known = tuple(m for m in ("ct", "mri", "pet") if self.vocabulary(m))
        return known or None

    @property
    def in_channels(self) -> int:
        if self.config.in_channels:
            return int(self.config.in_channels)
        cfg = getattr(self.model, "config", None)
        return int(getattr(cfg, "in_channels", 3))

    def preprocessed(self, volume: Volume, modality: str, cache_key: Hashable | None = None) -> tuple[Preprocessed, bool]:
        """``(preprocessed, cache_hit)``; cached under ``(cache_key, modality)`` when a key is given."""
        key = None if cache_key is None else (cache_key, modality)
        with self._lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                hit = self._cache[key]
                if tuple(hit.grid.source_shape) == volume.shape and np.allclose(
                    hit.grid.source_ijk_to_ras, volume.ijk_to_ras, atol=1e-6
                ):
                    return hit, True
        pre = preprocess(volume, modality, self.config.preprocess)
        if key is not None and self._cache_size:
            with self._lock:
                self._cache[key] = pre
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return pre, False

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _modality(self, volume: Volume, modality: str | None) -> str:
        m = normalize_modality(modality) or volume.modality or normalize_modality(self.config.default_modality)
        if not m:
            raise TerminologyError(
                f"{volume.name or 'volume'}: the imaging modality is unknown, and the model {self.name} reads "
                "prompts per modality.",
                "Pass the modality (ct, mri or pet): --modality ct on the command line, or the 'modality' "
                "field of a server job or upload.",
            )
        return m

    def segment(
        self,
        volume: Volume,
        prompts: Sequence,
        *,
        modality: str | None = None,
        roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        cache_key: Hashable | None = None,
    ) -> EngineResult:
        """Masks and probabilities per prompt on ``volume``'s grid.

        ``prompts``: :class:`~TextSegLib.knowledge.resolved.ResolvedPrompt` values (strings are
        resolved here, through the same step the CLI uses); the model is queried with each
        prompt's ``term`` and the result is keyed by its ``text``."""
        from ..knowledge.resolved import check_modality, engine_prompts

        if not [p for p in prompts if (p if isinstance(p, str) else getattr(p, "text", "")).strip()]:
            raise TerminologyError("No prompt given.", "Name at least one structure, e.g. -p liver.")
        modality = self._modality(volume, modality)
        check_modality(self, modality)
        resolved = engine_prompts(self, prompts, modality)
        texts = [p.text for p in resolved]
        terms = [p.term for p in resolved]
        # the presence step's neighbour rules (engine/neighbours.py): the structures they compare
        # with are asked in the same pass; only their probabilities are kept, for the rules
        neighbours = self._neighbour_terms(resolved, modality) if self.presence is not None else {}
        texts += [f"\0neighbour:{name}" for name in neighbours]
        terms += list(neighbours.values())
        timings: dict[str, float] = {}
        if cancel is not None:
            cancel.check()

        t = time.perf_counter()
        if progress:
            progress("preprocess", 0, 1)
        pre, hit = self.preprocessed(volume, modality, cache_key)
        timings["preprocess"] = time.perf_counter() - t
        if progress:
            progress("preprocess", 1, 1)

        t = time.perf_counter()
        with torch.inference_mode():
            q = self.queries.get(terms, modality)
        q = torch.as_tensor(q, dtype=torch.float32)
        if q.ndim != 2 or q.shape[0] != len(texts):
            raise ModelError(
                f"Query provider returned shape {tuple(q.shape)} for {len(texts)} prompt(s); expected ({len(texts)}, D)."
            )
        timings["encode_text"] = time.perf_counter() - t
        if progress:
            progress("encode", 1, 1)

        box = None if roi_ras is None else pre.grid.ras_box_to_index_box(*roi_ras)
        # Bounded memory: the float32 accumulator holds every prompt on the model grid; above
        # the limit, prompts are run in groups (the backbone then runs once per tile per group).
        voxels = int(np.prod(pre.grid.cropped_shape))
        group = max(1, min(len(texts), int(self.config.max_accumulator_bytes // (4 * voxels + 1))))
        masks: dict[str, np.ndarray] = {}
        probs: dict[str, np.ndarray] = {}
        found: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        timings["tiles"] = timings["postprocess"] = 0.0
        tiles: dict = {}
        for g0 in range(0, len(texts), group):
            t = time.perf_counter()
            prob, tiles = run_sliding_window(
                pre.array,
                self.model,
                q[g0:g0 + group],
                patch=self.config.patch_size,
                in_channels=self.in_channels,
                body=pre.body if self.config.skip_empty_tiles else None,
                box=box,
                device=self.device,
                autocast=autocast_factory(self.device, self.dtype),
                max_queries=self.config.max_queries_per_pass,
                progress=progress,
                cancel=cancel,
            )
            timings["tiles"] += time.perf_counter() - t
            t = time.perf_counter()
            for i, text in enumerate(texts[g0:g0 + group]):
                if cancel is not None:
                    cancel.check()
                m, p = source_mask_from_prob(prob[i], pre.grid, self.config.threshold)
                masks[text] = m
                probs[text] = p.astype(np.float16)
                found[text] = bool(m.any())
                reasons[text] = "" if found[text] else f"no voxel above the model's threshold {self.config.threshold:g}"
                if progress:
                    progress("postprocess", g0 + i + 1, len(texts))
            del prob
            timings["postprocess"] += time.perf_counter() - t
        tiles["prompt_groups"] = -(-len(texts) // group)
        timings["total"] = sum(timings.values())
        info = {
            "engine": self.name,
            "modality": modality,
            "device": str(self.device),
            "precision": str(self.dtype).replace("torch.", ""),
            "model_grid_shape": pre.grid.cropped_shape,
            "model_spacing": tuple(float(s) for s in pre.grid.spacing),
            "cache_hit": hit,
            "roi_box": box,
            **tiles,
        }
        neighbour_probs = {}
        for name in neighbours:
            key = f"\0neighbour:{name}"
            neighbour_probs[name] = probs.pop(key)
            masks.pop(key), found.pop(key), reasons.pop(key)
        result = EngineResult(masks=masks, probabilities=probs, timings=timings, info=info, found=found,
                              reasons=reasons, prompts={p.text: p for p in resolved})
        if self.presence is not None:
            from .presence import apply_presence

            apply_presence(result, volume, self.presence, modality=modality, cropped=roi_ras is not None,
                           neighbour_probs=neighbour_probs)
        return result

    def _neighbour_terms(self, resolved: Sequence, modality: str) -> dict[str, str]:
        """``{neighbour name: this model's term}`` for the presence step's neighbour rules, for
        the neighbours of ``resolved`` that the model knows and that are not asked anyway."""
        from ..knowledge.resolved import engine_prompts
        from .neighbours import neighbour_name, neighbour_names
        from .presence import structure_facts

        facts = [structure_facts(p) for p in resolved]
        asked = {neighbour_name(f) for f in facts} | {p.term for p in resolved}
        vocab = set(self.vocabulary(modality))
        out: dict[str, str] = {}
        for name in dict.fromkeys(n for f in facts for n in neighbour_names(f)):
            if name in asked:
                continue
            try:
                (rp,) = engine_prompts(self, [name], modality)
            except Exception:  # a neighbour the tree cannot resolve for this model is simply not used
                continue
            if not rp.free_text and rp.term in vocab and neighbour_name(structure_facts(rp)) == name:
                out[name] = rp.term
        return out


# -- query providers ------------------------------------------------------------------
class EncoderQueries:
    """Queries from a text encoder with ``encode(texts, modality)``; cached per (modality, text)."""

    def __init__(self, encoder, vocabulary: Mapping[str, Sequence[str]] | None = None, cache_size: int = 4096) -> None:
        self.encoder = encoder
        self._vocab = vocabulary or {}
        self._cache: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def vocabulary(self, modality: str) -> list[str]:
        return list(self._vocab.get(modality, []))

    def get(self, texts: Sequence[str], modality: str) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if (modality, t) not in self._cache]
        if todo:
            out = torch.as_tensor(self.encoder.encode(todo, modality)).float().cpu()
            for t, row in zip(todo, out):
                self._cache[(modality, t)] = row
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return torch.stack([self._cache[(modality, t)] for t in texts])


class TableQueries:
    """Precomputed queries per modality and term (works without a tokenizer).

    File format (``torch.save``, loaded with ``weights_only=True``):
    ``{"format": "textseg-query-table-1", "queries": {modality: {term: Tensor(D)}}}``.
    """

    FORMAT = "textseg-query-table-1"
    free_text = False

    def __init__(self, table: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        self.table = {m: {t.lower(): torch.as_tensor(v).float() for t, v in terms.items()} for m, terms in table.items()}

    def vocabulary(self, modality: str) -> list[str]:
        return sorted(self.table.get(modality, {}))

    def get(self, texts: Sequence[str], modality: str) -> torch.Tensor:
        import difflib

        terms = self.table.get(modality, {})
        rows = []
        for t in texts:
            key = t.strip().lower()
            if key not in terms:
                near = difflib.get_close_matches(key, list(terms), n=3)
                raise TerminologyError(
                    f"Prompt {t!r} is not in this model's {modality or 'unknown-modality'} vocabulary "
                    f"({len(terms)} terms).",
                    f"Try {', '.join(repr(n) for n in near)}." if near else "Run `textseg models list` to see the model's terms.",
                )
            rows.append(terms[key])
        return torch.stack(rows)

    def save(self, path) -> None:
        torch.save({"format": self.FORMAT, "queries": self.table}, str(path))

    @classmethod
    def load(cls, path) -> "TableQueries":
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # unreadable / not a torch file
            raise ModelError(f"{path}: cannot read the query table ({type(exc).__name__}: {exc}).",
                             "Re-create the file or re-download the model.") from None
        if not isinstance(obj, dict) or obj.get("format") != cls.FORMAT:
            raise ModelError(f"{path}: not a TextSeg query table (format {cls.FORMAT}).",
                             "Point the model manifest's 'queries' at a file written by TableQueries.save().")
        return cls(obj["queries"])
