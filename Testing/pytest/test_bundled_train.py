"""textseg-mini training loop (tiny model, synthetic cases) and weight files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from TextSegLib.errors import CheckpointError, ModelError
from TextSegLib.models.bundled import cases as cases_mod
from TextSegLib.models.bundled import trainer
from TextSegLib.models.bundled.model import MiniConfig, MiniModel, load_weights, save_weights
from TextSegLib.models.bundled.text import MiniQueryProvider

from _bundled_helpers import TINY, synthetic_case


@pytest.fixture()
def synthetic_cases(monkeypatch):
    cs = [synthetic_case("a", seed=1), synthetic_case("b", seed=2)]
    monkeypatch.setattr(cases_mod, "get_cases", lambda cache=None, rebuild=False: cs)
    return cs


def _sd(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_train_writes_model_and_resumes_reproducibly(tmp_path, synthetic_cases):
    a = tmp_path / "a"
    trainer.train(trainer.TrainConfig(out=str(a), steps=3, sat=dict(TINY), checkpoint_every=2), log=lambda m: None)
    for name in ("model.safetensors", "config.json", "terms.txt", "loss_curve.png", "train_log.csv", "checkpoint.pt"):
        assert (a / name).is_file(), name
    model, emb = load_weights(a)
    assert emb.shape == (len(model.config.terms), 384)
    assert "liver" in model.config.terms and "hepatic parenchyma" in model.config.terms
    assert model.config.concepts["ct"] == ["body", "liver", "spleen"]

    # Same seed, stop after 2 steps, then resume to 3: identical to the uninterrupted run.
    b = tmp_path / "b"
    trainer.train(trainer.TrainConfig(out=str(b), steps=3, stop_at=2, sat=dict(TINY)), log=lambda m: None)
    assert len((b / "train_log.csv").read_text().strip().splitlines()) == 3  # header + 2 steps
    trainer.train(trainer.TrainConfig(out=str(b), steps=3, sat=dict(TINY)), log=lambda m: None)
    ma, _ = load_weights(a)
    mb, _ = load_weights(b)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(va, vb, atol=2e-3), k  # float16 storage
    assert len((b / "train_log.csv").read_text().strip().splitlines()) == 4  # header + 3 steps


def test_loss_handles_negative_queries():
    logits = torch.zeros(1, 2, 4, 4, 4, requires_grad=True)
    target = torch.zeros(1, 2, 4, 4, 4)
    target[0, 0, :2] = 1
    valid = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    loss = trainer._loss(logits, target, valid)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad[0, 1].sum() > 0  # empty target pushes logits down


def test_weights_roundtrip_and_errors(tmp_path):
    cfg = MiniConfig(sat=dict(TINY), terms=["liver", "spleen"], concepts={"ct": ["liver", "spleen"]})
    model = MiniModel(cfg)
    emb = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    save_weights(model, emb, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(cfg.to_json())
    m2, e2 = load_weights(tmp_path)
    np.testing.assert_allclose(e2, emb, atol=1e-2)
    assert m2.config.terms == ["liver", "spleen"]

    with pytest.raises(ModelError, match="missing"):
        load_weights(tmp_path / "nowhere")
    wrong = MiniConfig(sat={**TINY, "stage_channels": (4, 12)}, terms=cfg.terms, concepts=cfg.concepts)
    (tmp_path / "config.json").write_text(wrong.to_json())
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights(tmp_path)


def test_query_provider_uses_cache_for_known_terms():
    head = MiniModel(MiniConfig(sat=dict(TINY))).query
    emb = np.eye(2, 384, dtype=np.float32)
    qp = MiniQueryProvider(head, ["Liver", "spleen"], emb, {"ct": ["liver"]}, use_tree=False)
    q = qp.get(["liver", "  SPLEEN "], "ct")
    assert q.shape == (2, 16) and qp.minilm_calls == 0
    assert not torch.allclose(qp.get(["liver"], "ct"), qp.get(["liver"], "mri"))  # modality embedding
    assert qp.vocabulary("CT") == ["liver"]


def test_one_body_organs_keep_one_component_only():
    # the bundled engine's former largest-component step now lives in the presence rules
    from TextSegLib.engine.presence import ONE_BODY
    from TextSegLib.models.bundled.engine import PRESENCE, _make_engine_class

    assert _make_engine_class().presence is PRESENCE
    assert "liver" in ONE_BODY and "kidney" in ONE_BODY and "lung tumor" not in ONE_BODY


def test_ema_update_moves_towards_weights():
    model = torch.nn.Linear(2, 1)
    ema = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    trainer._ema_update(ema, model, step=1000, decay=0.9)
    for k, v in model.state_dict().items():
        assert torch.allclose(ema[k], 0.1 * v), k  # d = min(0.9, 1001/1010) = 0.9


def test_exported_weights_are_the_ema(tmp_path, synthetic_cases):
    out = tmp_path / "ema"
    trainer.train(trainer.TrainConfig(out=str(out), steps=3, sat=dict(TINY), ema_decay=0.99,
                                      lr=0.05, warmup=1), log=lambda m: None)
    state = trainer._load_checkpoint(out / "checkpoint.pt")
    model, _ = load_weights(out)
    got = model.sat.state_dict()
    ema = {k[len("sat."):]: v for k, v in state["ema"].items() if k.startswith("sat.")}
    raw = {k[len("sat."):]: v for k, v in state["model"].items() if k.startswith("sat.")}
    assert all(torch.allclose(got[k], ema[k].float(), atol=2e-3) for k in got)
    assert any(not torch.allclose(got[k], raw[k].float(), atol=2e-3) for k in got)  # not the raw weights


def test_centre_structure_is_prompted_with_its_look_alikes():
    import random

    from _bundled_helpers import synthetic_case

    case = synthetic_case()  # liver, spleen, body labelled; aorta known absent
    for seed in range(40):
        centre, chosen = trainer._choose(case, [], random.Random(seed), 6)
        if centre == "liver":
            assert "spleen" in chosen and chosen[0] == "liver"
            break
    else:
        pytest.fail("no liver-centred sample in 40 seeds")
    assert "spleen" in trainer.PARTNERS["liver"] and "vertebral column" in trainer.PARTNERS["aorta"]


def test_cli_defaults_are_the_trainer_defaults():
    from TextSegLib.cli.train import command

    opts = {p.name: p.default for p in command.params}
    cfg = trainer.TrainConfig(out="x")
    assert opts["steps"] == cfg.steps and opts["seed"] == cfg.seed and opts["threads"] == cfg.threads
    assert opts["batch"] == cfg.batch == 4 and opts["device"] == cfg.device == "cpu"


def test_worker_processes_give_the_same_training(tmp_path, synthetic_cases):
    """Samples are a pure function of (seed, step): forked sample workers change nothing."""
    a, b = tmp_path / "serial", tmp_path / "workers"
    trainer.train(trainer.TrainConfig(out=str(a), steps=3, sat=dict(TINY)), log=lambda m: None)
    trainer.train(trainer.TrainConfig(out=str(b), steps=3, sat=dict(TINY), workers=2), log=lambda m: None)
    ma, _ = load_weights(a)
    mb, _ = load_weights(b)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k
    la = [r.split(",")[1] for r in (a / "train_log.csv").read_text().splitlines()[1:]]
    lb = [r.split(",")[1] for r in (b / "train_log.csv").read_text().splitlines()[1:]]
    assert la == lb and len(la) == 3


def test_term_embeddings_are_stored_in_the_cache(tmp_path, monkeypatch):
    terms = ("liver", "spleen")
    trainer._EMB_MEMO.pop(terms, None)
    first = trainer._term_embeddings(terms, tmp_path)
    files = list(tmp_path.glob("term-embeddings-*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), first)
    trainer._EMB_MEMO.pop(terms, None)
    # A machine without MiniLM trains from the copied cache: the encoder is not called again.
    monkeypatch.setattr(trainer.MiniLMEncoder, "shared", classmethod(lambda cls: (_ for _ in ()).throw(AssertionError)))
    assert np.array_equal(trainer._term_embeddings(terms, tmp_path), first)


def test_training_on_an_absent_gpu_is_a_clear_error(tmp_path, monkeypatch):
    from TextSegLib.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Exception, match="CUDA was requested") as info:
        trainer.train(trainer.TrainConfig(out=str(tmp_path / "x"), device="cuda"), log=lambda m: None)
    assert info.type.__name__ == "DeviceError" and not (tmp_path / "x").exists()
    assert main(["train", "--out", str(tmp_path / "y"), "--device", "cuda"]) != 0
