"""One run of the SAT authors' inference (zhaoziheng/SAT 5676be5) on the CPU, in their own venv.

Calls their own pieces unchanged: ``data.inference_dataset.Inference_Dataset`` (MONAI loading,
orientation, 1x1x3 mm spacing, foreground crop, normalisation, tiling) and
``evaluate.inference_engine.inference`` (tiles, Gaussian blending, threshold, NIfTI writing).
What differs from their ``inference.py`` and why:

* no torchrun/DDP/NCCL: their ``build_maskformer`` wraps the model in DistributedDataParallel
  with CUDA device ids; here their ``model.maskformer.Maskformer`` is built directly and the
  ``module.`` prefix of the checkpoint keys is removed (the unwrapped layout);
* the checkpoint's deep-supervision heads are left out, as their default ``--partial_load True``
  does with ``--deep_supervision False``;
* the text encoder is replaced by a table of the same query rows TextSeg gets (no tokenizer
  offline); ``RANK=0`` makes their ``is_master()`` true;
* the DataLoader runs in this process (``num_workers=0``), so the peak RSS is the pipeline's.

To get probabilities for the parity figures, their module's ``torch`` name is given a thin
proxy whose ``zeros`` keeps the two accumulators (weighted sum, weights) it creates; the
probabilities are their quotient, as in their code. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--queries", required=True, help=".npz with 'terms' and 'rows'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="their --batchsize_3d")
    ap.add_argument("--dump", default="", help="write the model-grid probabilities here (.npy)")
    a = ap.parse_args()
    t_start = time.perf_counter()
    os.environ.setdefault("RANK", "0")
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from torch.utils.data import DataLoader

    from data.inference_dataset import Inference_Dataset, collate_fn
    from evaluate import inference_engine
    from model.maskformer import Maskformer

    z = np.load(a.queries)
    table = {str(t): torch.from_numpy(r) for t, r in zip(z["terms"], z["rows"])}

    class TableTextEncoder:
        """Stands in for their Text_Encoder: ``(labels, modality) -> (N, 768)``."""

        def eval(self):
            return self

        def __call__(self, labels, modality):
            return torch.stack([table[lab] for lab in labels])

    made: list = []

    class TorchProxy:
        """``torch`` for their inference module, recording the tensors ``zeros`` makes."""

        def __getattr__(self, name):
            return getattr(torch, name)

        def zeros(self, *args, **kwargs):
            t = torch.zeros(*args, **kwargs)
            made.append(t)
            return t

    counts = {"tiles": 0, "forward_s": 0.0}

    class CountingDataset(Inference_Dataset):
        def __getitem__(self, idx):
            item = super().__getitem__(idx)
            counts["tiles"] += sum(len(b) for b in item["batched_y1y2_x1x2_z1z2"])
            return item

    model = Maskformer("UNET", [288, 288, 96], [32, 32, 32], False)
    sd = torch.load(a.weights, map_location="cpu", weights_only=True)["model_state_dict"]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        sys.exit(f"{a.weights}: {len(missing)} key(s) of their model missing, e.g. {missing[0]}")
    # their --partial_load defaults to True: keys the model lacks (the deep-supervision heads,
    # mid_mask_embed_proj.*, with --deep_supervision False) are left out
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
    del sd, own

    def pre_hook(mod, args, kwargs):
        counts["_t"] = time.perf_counter()

    def post_hook(mod, args, kwargs, out):
        counts["forward_s"] += time.perf_counter() - counts.pop("_t")

    model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    model.register_forward_hook(post_hook, with_kwargs=True)

    out = Path(a.out)
    (out / "results").mkdir(parents=True, exist_ok=True)  # their inference.py makes --rcd_dir first
    jsonl = out / "bench.jsonl"
    jsonl.write_text(json.dumps({"image": str(Path(a.image).resolve()), "label": list(table),
                                 "modality": "ct", "dataset": "bench"}) + "\n")
    t0 = time.perf_counter()
    testset = CountingDataset(str(jsonl), max_queries=256, batch_size=a.batch)
    loader = DataLoader(testset, batch_size=1, num_workers=0, collate_fn=collate_fn)
    inference_engine.torch = TorchProxy()
    inference_engine.inference(model=model, text_encoder=TableTextEncoder(), device=torch.device("cpu"),
                               testset=testset, testloader=loader, nib_dir=str(out / "results"))
    pipeline_s = time.perf_counter() - t0
    if a.dump:
        pred, acc = made[-2], made[-1]  # prediction, accumulation (created in that order)
        np.save(a.dump, (pred / acc).numpy().astype(np.float32))
    print(json.dumps({"side": "authors", "pipeline_s": pipeline_s, "tiles_run": counts["tiles"],
                      "tiles_total": counts["tiles"], "forward_s": counts["forward_s"],
                      "tile_s": counts["forward_s"] / max(1, counts["tiles"]),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "in_process_s": time.perf_counter() - t_start}))


if __name__ == "__main__":
    sys.exit(main())
