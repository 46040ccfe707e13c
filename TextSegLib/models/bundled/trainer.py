"""The textseg-mini training loop: reproducible (fixed seeds; every step's
randomness derives from ``seed`` and the step number), resumable from
``<out>/checkpoint.pt``, with a progress bar, a CSV loss log and a loss-curve
PNG. The exported weights are an exponential moving average (EMA) of the
training weights (``ema_decay``; 0 exports the raw weights). ``train(TrainConfig(...))`` writes ``model.safetensors`` +
``config.json`` + ``terms.txt`` + ``loss_curve.png`` into ``out``.
"""
from __future__ import annotations

import csv
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError, OutputPathError
from . import cases as cases_mod
from .augment import make_sample
from .labels import prompt_forms, sample_prompt
from .negatives import negative_sample
from .model import SAT_OVERRIDES, MiniConfig, MiniModel, save_weights
from .text import MODALITY_INDEX, MiniLMEncoder, normalize_prompt

#: Structures the sampler favours (the demo's and the held-out test's organs).
PRIORITY = ("liver", "spleen", "left kidney", "right kidney", "aorta", "stomach",
            "left lung", "right lung", "body", "heart", "gallbladder", "pancreas",
            "inferior vena cava", "vertebral column")
#: Look-alike structures prompted together with a centre structure, so that each
#: query is learned against its confusers in the same crop (an empty target when
#: the partner is outside the crop). Diagnosis of the first recipe: "aorta" fired
#: on the vertebral body and "liver" on the spleen.
PARTNERS = {
    "aorta": ("vertebral column", "inferior vena cava"),
    "liver": ("spleen", "right kidney", "stomach"),
    "spleen": ("liver", "left kidney", "stomach"),
    "left kidney": ("right kidney", "spleen"),
    "right kidney": ("left kidney", "liver"),
    "stomach": ("spleen", "liver"),
    "vertebral column": ("aorta",),
    "inferior vena cava": ("aorta",),
}
#: Probability that a crop is centred on a PRIORITY structure of the case.
PRIORITY_CENTRE_P = 0.8
#: Relative sampling weight per case (ts_abd counts twice: two label sets).
CASE_WEIGHTS = {"ts_abd": 3.0, "ts_abd_sm": 2.0, "ts_mr": 1.5, "ts_cta": 1.5, "slicerio_chest": 1.0,
                "pyradiomics_lung1": 0.5, "pyradiomics_lung2": 0.7, "lits117": 1.0}


@dataclass
class TrainConfig:
    out: str
    steps: int = 1800
    max_minutes: float = 0.0  # 0 = no wall-clock limit; else stop (and save) after this
    stop_at: int = 0  # stop (and save) after this step; 0 = at ``steps`` (the LR schedule's length)
    seed: int = 1234
    lr: float = 1e-3
    warmup: int = 100
    queries_per_step: int = 10
    ema_decay: float = 0.99  # EMA of the weights, exported; 0 = export the raw weights
    batch: int = 4  # crops per step; 4 is ~1.7x cheaper per crop than 1 on a CPU
    threads: int = 2  # torch threads: the 2-core CPU recipe; use 1 on a busy machine
    device: str = "cpu"  # "cpu" (the reference recipe) or "cuda"; samples are identical on both
    workers: int = 0  # processes preparing samples ahead (0 = in the training process)
    checkpoint_every: int = 50
    cache: str | None = None
    sat: dict = field(default_factory=lambda: dict(SAT_OVERRIDES))
    #: negative crops (:mod:`.negatives`): the probability that a crop of a batch is one, 0 = the
    #: recipe without them; its sources are the lungs' slab of the chest cases and these head scans
    negative_p: float = 0.0
    negative_heads: tuple[str, ...] = ()

    @property
    def patch(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.sat["patch_size"])  # type: ignore[return-value]


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return float(cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(1.0, t)))))


def _load_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``; numpy scalars (older checkpoints' lr) allowed."""
    allowed = [np.dtype, np._core.multiarray.scalar, type(np.dtype(np.float64))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE over valid voxels + soft Dice for queries with a non-empty target."""
    v = valid.unsqueeze(1).float()
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * v).sum() / (
        v.sum() * logits.shape[1]).clamp(min=1)
    p = torch.sigmoid(logits) * v
    dims = (2, 3, 4)
    inter = (p * target).sum(dims)
    denom = p.sum(dims) + target.sum(dims)
    pos = target.sum(dims) > 0
    dice = 1 - (2 * inter + 1) / (denom + 1)
    dloss = dice[pos].mean() if pos.any() else logits.sum() * 0
    return bce + dloss


def _choose(case: cases_mod.Case, all_concepts: list[str], rng: random.Random, k: int) -> tuple[str | None, list[str]]:
    """Centre concept and the K concepts (prompts) of one sample."""
    labelled = sorted(case.labels)
    pri = [c for c in PRIORITY if c in case.labels]
    centre = rng.choice(pri) if pri and rng.random() < PRIORITY_CENTRE_P else (rng.choice(labelled) if labelled and rng.random() < 0.8 else None)
    chosen = [centre] if centre else []
    for p in PARTNERS.get(centre or "", ()):  # look-alikes, present in the case or known absent
        if (p in case.labels or p in case.negatives) and len(chosen) < k - 1:
            chosen.append(p)
    pool = pri + labelled
    while len(chosen) < k - 1 and len(set(pool) - set(chosen)) > 0:
        c = rng.choice(pool)
        if c not in chosen:
            chosen.append(c)
    negs = sorted(case.negatives)
    if negs:  # known-absent structures: "nothing here"
        chosen.append(rng.choice(negs))
    while len(chosen) < k and labelled:
        chosen.append(rng.choice(labelled))
    return centre, chosen[:k]


def vocabulary_of(cases: list[cases_mod.Case]) -> dict[str, list[str]]:
    vocab: dict[str, set[str]] = {}
    for c in cases:
        if c.name == cases_mod.HOLDOUT:
            continue
        vocab.setdefault(c.modality, set()).update(c.labels)
    return {m: sorted(v) for m, v in vocab.items()}


def _training_set(cache: Path | None) -> tuple[list[cases_mod.Case], dict[str, list[str]], list[str], list[str]]:
    """``(training cases, vocabulary per modality, concepts, prompt forms)``; the held-out case excluded."""
    all_cases = cases_mod.get_cases(cache)
    train_cases = [c for c in all_cases if c.name != cases_mod.HOLDOUT]
    vocab = vocabulary_of(all_cases)
    concepts = sorted({c for v in vocab.values() for c in v} | {n for c in train_cases for n in c.negatives})
    terms = sorted({normalize_prompt(f) for c in concepts for f in prompt_forms(c)})
    return train_cases, vocab, concepts, terms


def _negative_sources(cfg: TrainConfig, train_cases: list[cases_mod.Case], vocab: dict[str, list[str]],
                      log: Callable[[str], None]) -> list:
    """The negative-crop sources of ``cfg`` (none when ``cfg.negative_p`` is 0)."""
    if cfg.negative_p <= 0:
        return []
    from ...io import read_volume
    from .negatives import chest_sources, head_sources

    heads = []
    for path in cfg.negative_heads:
        vol = read_volume(path)
        vol.modality = vol.modality or "mri"
        heads.append(vol)
    out = chest_sources(train_cases, vocab) + head_sources(heads, vocab)
    log(f"Negative crops (p = {cfg.negative_p:g}) from {len(out)} source(s): "
        + ", ".join(f"{s.case.name} ({len(s.concepts)} absent)" for s in out))
    return out


_EMB_MEMO: dict[tuple[str, ...], np.ndarray] = {}


def _term_embeddings(terms: tuple[str, ...], cache: Path | None = None) -> np.ndarray:
    """MiniLM embeddings of the term list, memoised in the process and stored in
    the training cache (``term-embeddings-<sha>.npy``), so a machine without the
    MiniLM package can train from a copied cache."""
    if terms not in _EMB_MEMO:
        import hashlib

        from . import sources

        key = hashlib.sha256("\n".join(terms).encode()).hexdigest()[:16]
        path = (cache or sources.cache_dir()) / f"term-embeddings-{key}.npy"
        if path.is_file():
            _EMB_MEMO[terms] = np.load(path)
        else:
            _EMB_MEMO[terms] = MiniLMEncoder.shared().encode(list(terms))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, _EMB_MEMO[terms])
            except OSError:
                pass  # a read-only cache only costs a re-encode next time
    return _EMB_MEMO[terms]


#: Read-only training context for sample-preparing worker processes (set before they fork).
_CTX: dict = {}


def _step_inputs(step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch of optimiser step ``step``: a pure function of the seed and the step
    number, so serial, worker-process, CPU and GPU runs see the same samples."""
    cfg, train_cases, cum, concepts, emb_of = (_CTX[k] for k in ("cfg", "cases", "cum", "concepts", "emb_of"))
    rng = random.Random(cfg.seed * 1_000_003 + step)
    xs, ts, vs, qs, mods = [], [], [], [], []
    negatives = _CTX.get("negatives")
    for _ in range(cfg.batch):
        if negatives and cfg.negative_p > 0 and rng.random() < cfg.negative_p:  # no draw without them
            src = negatives[rng.randrange(len(negatives))]
            x, t, v, chosen = negative_sample(src, cfg.queries_per_step, cfg.patch, rng)
            case = src.case
        else:
            case = train_cases[int(np.searchsorted(cum, rng.random()))]
            centre, chosen = _choose(case, concepts, rng, cfg.queries_per_step)
            x, t, v = make_sample(case, chosen, cfg.patch, rng, centre)
        xs.append(x); ts.append(t); vs.append(v)
        qs.append(np.stack([emb_of[normalize_prompt(sample_prompt(c, rng))] for c in chosen]))
        mods.append(MODALITY_INDEX[case.modality])
    return np.stack(xs), np.stack(ts), np.stack(vs), np.stack(qs), np.array(mods)


def _batches(start: int, stop: int, pool=None):
    """Step inputs for ``start..stop-1`` in order, from ``pool`` (forked sample workers) if given."""
    if pool is None:
        for step in range(start, stop):
            yield _step_inputs(step)
    else:
        yield from pool.imap(_step_inputs, range(start, stop), chunksize=1)


def _ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, step: int, decay: float) -> None:
    """``ema = d * ema + (1 - d) * weights`` with a warm-up ``d = min(decay, (1 + step) / (10 + step))``."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema[k].copy_(v)


def plot_loss(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    w = max(1, len(loss) // 40)
    smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="loss per step")
    ax.plot(steps[w - 1:], smooth, lw=1.8, label=f"moving mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("BCE + Dice loss")
    ax.set_title("textseg-mini training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) and write the model folder ``cfg.out``; returns it."""
    from ...engine.device import choose_device

    out = Path(cfg.out)
    device = choose_device(cfg.device)  # a clear error for an absent GPU, before any work
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"Cannot create the output folder {out}: {exc.strerror}.") from None
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cache = Path(cfg.cache) if cfg.cache else None
    log("Loading training cases (downloads sources on first use) ...")
    train_cases, vocab, concepts, terms = _training_set(cache)
    log(f"{len(train_cases)} training cases, {len(concepts)} concepts, {len(terms)} prompt forms; "
        f"held out: {cases_mod.HOLDOUT}")
    emb = _term_embeddings(tuple(terms), cache)
    emb_of = {t: emb[i] for i, t in enumerate(terms)}
    weights = np.array([CASE_WEIGHTS.get(c.name, 1.0) for c in train_cases])
    weights /= weights.sum()
    _CTX.update(cfg=cfg, cases=train_cases, cum=np.cumsum(weights), concepts=concepts, emb_of=emb_of,
                negatives=_negative_sources(cfg, train_cases, vocab, log))
    pool = None
    if cfg.workers > 0:  # fork the sample workers before any GPU context exists
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(cfg.workers)
    try:
        return _train_loop(cfg, device, out, terms, vocab, emb, pool, log)
    finally:
        if pool is not None:
            pool.terminate()


def _train_loop(cfg: TrainConfig, device: torch.device, out: Path, terms: list[str], vocab: dict[str, list[str]], emb: np.ndarray,
                pool, log: Callable[[str], None]) -> Path:
    mcfg = MiniConfig(sat=dict(cfg.sat), terms=terms, concepts=vocab,
                      info={"train": {k: v for k, v in asdict(cfg).items() if k not in ("out", "cache")}})
    model = MiniModel(mcfg)
    model.query.set_normalization(emb)
    model.to(device)
    # oneDNN's 3-D convolutions are ~20 % faster channels-last on a CPU (measured on 2-core EPYC).
    fmt = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ckpt, log_path = out / "checkpoint.pt", out / "train_log.csv"
    step = 0
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if ckpt.exists():
        try:
            state = _load_checkpoint(ckpt)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step = int(state["step"])
            ema = {k: v.to(device) for k, v in state["ema"].items()} if state.get("ema") else \
                {k: v.detach().clone() for k, v in model.state_dict().items()}
        except Exception as exc:
            raise CheckpointError(f"Cannot resume from {ckpt}: {exc}.",
                                  "Delete the checkpoint to start over.") from None
        log(f"Resuming from step {step}.")
    elif log_path.exists():
        log_path.unlink()

    from tqdm import tqdm

    t0 = time.time()
    model.train()
    new_log = not log_path.exists()
    with log_path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["step", "loss", "lr", "seconds"])
        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
        last = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
        for inputs in _batches(step, last, pool):
            if cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes:
                log(f"Time limit of {cfg.max_minutes} min reached at step {step}.")
                break
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg)
            x, target, valid, q_emb, midx = (torch.from_numpy(a).to(device) for a in inputs)
            x = x.contiguous(memory_format=fmt)
            midx = midx[:, None].expand(-1, q_emb.shape[1])
            logits = model.sat.decode(model.sat.encode_image(x), model.query(q_emb, midx))
            loss = _loss(logits, target, valid)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if cfg.ema_decay > 0:
                _ema_update(ema, model, step, cfg.ema_decay)
            step += 1
            writer.writerow([step, f"{loss.item():.5f}", f"{_lr(step - 1, cfg):.6f}", f"{time.time() - t0:.1f}"])
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                fh.flush()
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "ema": ema}, tmp)
                tmp.replace(ckpt)
        bar.close()
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "ema": ema}, tmp)
    tmp.replace(ckpt)
    mcfg.info["steps_done"] = step
    if cfg.ema_decay > 0:
        model.load_state_dict(ema)
    model.cpu()
    save_weights(model, emb, out / "model.safetensors")
    (out / "config.json").write_text(mcfg.to_json())
    (out / "terms.txt").write_text("\n".join(terms) + "\n")
    plot_loss(log_path, out / "loss_curve.png")
    log(f"Wrote {out / 'model.safetensors'} after {step} steps ({(time.time() - t0) / 60:.1f} min).")
    return out


def export_checkpoint(train_dir: str | Path, out: str | Path, cache: str | None = None) -> Path:
    """Write a model folder from ``train_dir/checkpoint.pt`` (e.g. of a run still going)."""
    train_dir, out = Path(train_dir), Path(out)
    _, vocab, _, terms = _training_set(Path(cache) if cache else None)
    state = _load_checkpoint(train_dir / "checkpoint.pt")
    mcfg = MiniConfig(terms=terms, concepts=vocab, info={"steps_done": int(state["step"])})
    model = MiniModel(mcfg)
    model.load_state_dict(state.get("ema") or state["model"])
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, _term_embeddings(tuple(terms), Path(cache) if cache else None), out / "model.safetensors")
    (out / "config.json").write_text(mcfg.to_json())
    (out / "terms.txt").write_text("\n".join(terms) + "\n")
    return out
