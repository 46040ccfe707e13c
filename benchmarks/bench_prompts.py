"""How much do extra prompts cost?  Prints wall-clock figures.

Compares, in one run on one machine:

* engine, 1 prompt;
* engine, N prompts (backbone once per tile, queries batched, empty tiles skipped);
* naive baseline, N prompts: one full pass per prompt (preprocess, every tile,
  no tile skipping), as a per-prompt loop over the reference pipeline would do.

Target: engine(N=10) <= 1.3 x engine(N=1).

The model is the SAT-Nano architecture at full size (109 M parameters) with the
SAT reference's formula weights (``/work/shared/sat-reference/weights.py``
when present, else PyTorch's default init; the cost is the same). Prompts use
a table of fixed random queries (the SAT text encoder needs the BioLORD
tokenizer, which is not available offline; its cost is excluded from every
column alike). On a small CPU the full 288×288×96 patch is far too slow, so the
default scenario uses a coarse grid and a 64×64×32 patch; pass --spacing /
--patch to change it.

    python benchmarks/bench_prompts.py                      # SAT-Nano size, 6 mm, 1 tile
    python benchmarks/bench_prompts.py --config small --spacing 3   # small config, several tiles
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
import zlib
from pathlib import Path

import torch

from TextSegLib.engine.preprocess import PreprocessConfig
from TextSegLib.engine.sat_engine import InferenceConfig, SATEngine, TableQueries
from TextSegLib.models.sat import build_sat

REPO = Path(__file__).resolve().parents[1]
SAT_REF = Path("/work/shared/sat-reference")
PROMPTS = ["liver", "spleen", "left kidney", "right kidney", "stomach", "pancreas", "aorta",
           "gallbladder", "urinary bladder", "heart"]
SMALL = dict(stage_channels=(16, 32, 64, 128, 256), query_dim=128, num_heads=4, ffn_dim=256,
             mask_hidden=64, proj_hidden=128, num_layers=2)


def formula_weights(model: torch.nn.Module) -> str:
    f = SAT_REF / "weights.py"
    if not f.exists():
        return "PyTorch default init"
    spec = importlib.util.spec_from_file_location("sat_ref_weights", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    sd = {k: mod.formula_tensor(k, tuple(v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    return "SAT reference formula weights"


def table(dim: int) -> TableQueries:
    rows = {}
    for p in PROMPTS:
        g = torch.Generator().manual_seed(zlib.crc32(p.encode()))
        rows[p] = torch.randn(dim, generator=g)
    return TableQueries({"ct": rows})


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["nano", "small"], default="nano")
    ap.add_argument("--spacing", type=float, default=6.0, help="isotropic model grid spacing, mm")
    ap.add_argument("--patch", default="64,64,32")
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="engine runs per figure (best is kept)")
    ap.add_argument("--image", default=str(REPO / "Testing/Data/totalsegmentator/example_ct_sm.nii.gz"))
    args = ap.parse_args()
    patch = tuple(int(v) for v in args.patch.split(","))
    from TextSegLib.io import read_volume

    vol = read_volume(args.image, modality="ct")
    over = {} if args.config == "nano" else dict(SMALL)
    model = build_sat("nano", patch_size=patch, **over).eval()
    init = formula_weights(model)
    q = table(model.config.query_dim)
    prompts = PROMPTS[: args.prompts]
    pre = PreprocessConfig(spacing=(args.spacing,) * 3)
    fast = SATEngine(model, q, InferenceConfig(preprocess=pre, patch_size=patch, device="cpu"), name="engine")
    naive = SATEngine(model, q, InferenceConfig(preprocess=pre, patch_size=patch, device="cpu",
                                                 skip_empty_tiles=False), name="naive")

    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), no GPU used")
    print(f"model: SAT-Nano architecture{' (small config)' if over else ''}, {params:.1f} M parameters, {init}")
    print(f"image: {Path(args.image).name} {vol.shape}, model grid {args.spacing} mm, patch {patch}")
    fast.segment(vol, prompts[:1])  # warm-up (allocator, thread pool)
    # The machine is shared: interleave the engine runs and keep the best of --repeats for each;
    # CPU time (all threads of this process) is reported beside wall time as it is less disturbed.
    one, many = [], []
    for _ in range(args.repeats):
        one.append(timed(lambda: fast.segment(vol, prompts[:1])))
        many.append(timed(lambda: fast.segment(vol, prompts)))
    w1, c1 = min(r[0] for r in one), min(r[1] for r in one)
    wn, cn = min(r[0] for r in many), min(r[1] for r in many)
    rn = min(many, key=lambda r: r[0])[2]
    wb = cb = 0.0
    for p in prompts:
        dw, dc, rb = timed(lambda: naive.segment(vol, [p]))
        wb, cb = wb + dw, cb + dc
    n = len(prompts)
    print(f"tiles: engine {rn.info['tiles_run']}/{rn.info['tiles_total']} run; naive {rb.info['tiles_run']} per prompt "
          "(no skipping)")
    print(f"{'':24s}{'wall s':>9s}{'CPU s':>9s}{'wall x1':>9s}{'CPU x1':>9s}")
    for label, w, c in [("engine, 1 prompt", w1, c1), (f"engine, {n} prompts", wn, cn),
                        (f"naive, {n} prompts", wb, cb)]:
        print(f"{label:24s}{w:9.2f}{c:9.2f}{w / w1:9.2f}{c / c1:9.2f}")
    print(f"target engine {n} prompts <= 1.3 x one prompt: wall {'PASS' if wn <= 1.3 * w1 else 'FAIL'}, "
          f"CPU {'PASS' if cn <= 1.3 * c1 else 'FAIL'}; speed-up over naive: wall {wb / wn:.1f} x, CPU {cb / cn:.1f} x")
    # Component view of one tile (least sensitive to other load): backbone vs query decoding.
    x = torch.zeros((1, model.config.in_channels) + patch)
    qs = q.get(prompts, "ct")
    with torch.inference_mode():
        enc = min(timed(lambda: model.encode_image(x))[0] for _ in range(args.repeats))
        feats = model.encode_image(x)
        d1 = min(timed(lambda: model.decode(feats, qs[:1]))[0] for _ in range(args.repeats))
        dn = min(timed(lambda: model.decode(feats, qs))[0] for _ in range(args.repeats))
    print(f"one tile: backbone {enc:.3f} s, decode 1 query {d1:.3f} s, decode {n} queries {dn:.3f} s "
          f"-> {n} prompts cost {(enc + dn) / (enc + d1):.2f} x one prompt per tile")
    print("per-stage, engine N prompts: " + ", ".join(f"{k} {v:.2f} s" for k, v in rn.timings.items()))


if __name__ == "__main__":
    main()
