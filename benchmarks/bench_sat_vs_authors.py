"""TextSeg's SAT-Nano side by side with the SAT authors' inference code, same weights and input.

The authors' side is zhaoziheng/SAT at commit 5676be5, run by
``benchmarks/sat_authors/authors_child.py`` in its own venv (MONAI 1.1.0, nibabel 4.0.2, numpy
1.26, einops 0.6.1, positional_encodings 6.0.1; torch is the one of the interpreter running this
script, through a ``.pth`` line). TextSeg's side is ``textseg segment`` end to end
(``benchmarks/sat_authors/textseg_child.py``) on a model folder holding the same checkpoint.

* Weights: the formula weights of ``Testing/Data/sat-reference`` (keys-nano.tsv), one file
  read by both sides.
* Queries: both sides get the same fixed query rows per prompt
  (``sat_authors/common.py:query_embeddings``); the text tower is not run (its HF tokenizer is
  not available offline), so what is compared is everything from the image file to the masks.
* Runs alternate (authors, TextSeg; then TextSeg, authors; ...), each in a fresh process; the
  parent measures process wall time and the child's peak RSS (``os.wait4`` rusage).
* Parity is on the model grid (1x1x3 mm, foreground-cropped), where the authors' pipeline ends
  (they write masks on that grid); TextSeg goes on to resample to the source grid and write a
  .seg.nrrd, which its time includes.

    PYTHONPATH=. python benchmarks/bench_sat_vs_authors.py [--pairs 3] [--threads 2]
        [--image CT.nii.gz] [--prompts liver,spleen,pancreas,stomach]
        [--authors-repo CHECKOUT] [--cache ~/.cache/textseg/sat-authors] [--json OUT.json]

The first run clones the authors' repository into the cache folder and builds the venv there
(needs the network once); ``--authors-repo`` uses a checkout you have. This is a benchmark, not
a unit test: a full-size SAT-Nano tile takes minutes on two CPU threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "sat_authors"
sys.path[:0] = [str(HERE), str(REPO / "Testing" / "pytest")]

from common import (AUTHORS_COMMIT, AUTHORS_PACKAGES, AUTHORS_URL, child_result, machine,  # noqa: E402
                    parity, query_embeddings, ratio_line, summarise)

DEFAULT_IMAGE = REPO / "Testing" / "Data" / "totalsegmentator" / "example_ct_sm.nii.gz"
DEFAULT_PROMPTS = "liver,spleen,pancreas,stomach"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a CT NIfTI file")
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="comma separated SAT terms")
    ap.add_argument("--pairs", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads of each child")
    ap.add_argument("--authors-repo", type=Path, help="an existing checkout of zhaoziheng/SAT")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/textseg/sat-authors").expanduser(),
                    help="where the checkout and the authors' venv are kept")
    ap.add_argument("--authors-batch", type=int, default=1,
                    help="the authors' --batchsize_3d (their README: 1 is the low-memory setting)")
    ap.add_argument("--work", type=Path, help="keep weights, outputs and probabilities here")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    a = ap.parse_args(argv)
    if a.pairs < 1 or a.threads < 1 or a.authors_batch < 1:
        ap.error("--pairs, --threads and --authors-batch must be at least 1")
    if not a.image.is_file():
        ap.error(f"--image {a.image}: no such file; pass a CT NIfTI file (.nii or .nii.gz)")
    if a.authors_repo is not None and not (a.authors_repo / "evaluate" / "inference_engine.py").is_file():
        ap.error(f"--authors-repo {a.authors_repo}: not a checkout of {AUTHORS_URL} "
                 "(evaluate/inference_engine.py missing); clone it, or leave the option out")
    a.prompt_list = [p.strip() for p in a.prompts.split(",") if p.strip()]
    if not a.prompt_list:
        ap.error("--prompts: name at least one structure, e.g. --prompts liver")
    return a


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def authors_checkout(a: argparse.Namespace) -> Path:
    """The authors' code at the pinned commit: ``--authors-repo`` (checked), else cloned into the cache."""
    repo = a.authors_repo or a.cache / "SAT"
    if a.authors_repo is None and not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        print(f"cloning {AUTHORS_URL} into {repo} ...", flush=True)
        subprocess.run(["git", "clone", "-q", AUTHORS_URL, str(repo)], check=True)
    head = _git(repo, "rev-parse", "HEAD")
    if not head.startswith(AUTHORS_COMMIT):
        if a.authors_repo is not None:
            sys.exit(f"--authors-repo {repo}: HEAD is {head[:7]}, the benchmark needs {AUTHORS_COMMIT}; "
                     f"run `git -C {repo} checkout {AUTHORS_COMMIT}`")
        _git(repo, "checkout", "-q", AUTHORS_COMMIT)
    return repo


def authors_venv(cache: Path) -> Path:
    """The authors' interpreter (``cache/venv``), made on first use; returns its python."""
    venv = cache / "venv"
    py = venv / "bin" / "python"
    marker = venv / "textseg-bench-ready"
    if marker.is_file():
        return py
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"building the authors' venv in {venv} ...", flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    # no dependencies resolved: pip must never touch the packages of the interpreter we borrow torch from
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", *AUTHORS_PACKAGES], check=True)
    import torch

    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # appended after the venv's own site-packages: its numpy/nibabel/pandas win, torch and scipy come from here
    Path(site, "zz_textseg_torch.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")
    marker.write_text(" ".join(AUTHORS_PACKAGES) + "\n")
    return py


def prepare(work: Path, prompts: list[str]) -> tuple[Path, Path, Path]:
    """Model folder (formula checkpoint + query table + manifest) and the authors' query file."""
    import numpy as np
    import torch

    from _formula_weights import state_dict_from_keys
    from TextSegLib.engine.sat_engine import TableQueries

    folder = work / "model"
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "nano.pth"
    if not weights.is_file():
        sd = state_dict_from_keys(REPO / "Testing" / "Data" / "sat-reference" / "keys-nano.tsv")
        torch.save({"model_state_dict": sd}, str(weights) + ".part")
        os.replace(str(weights) + ".part", weights)
    rows = query_embeddings(prompts)
    TableQueries({"ct": {p: torch.from_numpy(r) for p, r in zip(prompts, rows)}}).save(folder / "queries.pt")
    (folder / "textseg-model.json").write_text(json.dumps({
        "name": "SAT-Nano-formula", "architecture": "sat", "variant": "nano", "checkpoint": "nano.pth",
        "queries": {"type": "table", "file": "queries.pt"}}))
    qfile = work / "queries.npz"
    np.savez(qfile, terms=np.array([p.lower() for p in prompts]), rows=rows)
    return folder, weights, qfile


def run_measured(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Run one child: its result line, process wall time and its own peak RSS (``os.wait4``)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=so, stderr=se, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        so.seek(0), se.seek(0)
        out, err = so.read(), se.read()
    if proc.returncode != 0:
        sys.exit(f"{Path(cmd[1]).name} failed (exit {proc.returncode}):\n{err[-3000:]}")
    r = child_result(out)
    r["process_s"] = wall
    r["peak_rss_gib"] = usage.ru_maxrss / 1024 ** 2  # KiB on Linux
    return r


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    repo = authors_checkout(a)
    py_authors = authors_venv(a.cache)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-sat-authors-"))
    work.mkdir(parents=True, exist_ok=True)
    folder, weights, qfile = prepare(work, a.prompt_list)
    threads = str(a.threads)
    base_env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    env_authors = {**base_env, "RANK": "0",
                   "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "model" / "dynamic-network-architectures-main")])}
    env_ours = {**base_env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd_authors = [str(py_authors), str(HERE / "authors_child.py"), "--image", str(a.image.resolve()),
                   "--weights", str(weights), "--queries", str(qfile), "--out", str(work / "authors"),
                   "--threads", threads, "--batch", str(a.authors_batch), "--dump", str(work / "authors.npy")]
    cmd_ours = [sys.executable, str(HERE / "textseg_child.py"), "--image", str(a.image.resolve()),
                "--model-path", str(folder), "--out", str(work / "textseg.seg.nrrd"), "--threads", threads,
                "--prompts", ",".join(a.prompt_list), "--dump", str(work / "textseg.npy")]
    m0 = machine()
    print(f"machine: {m0['cpu']}, {m0['cores']} logical cores, load average {m0['load']} at the start; "
          f"{a.threads} threads per run", flush=True)
    print(f"input: {a.image.name}, prompts {a.prompt_list}, {a.pairs} pair(s), authors {AUTHORS_COMMIT} "
          f"batch {a.authors_batch}", flush=True)
    runs: dict[str, list[dict]] = {"authors": [], "textseg": []}
    for i in range(a.pairs):
        order = ("authors", "textseg") if i % 2 == 0 else ("textseg", "authors")
        for side in order:
            cmd, env, cwd = (cmd_authors, env_authors, repo) if side == "authors" else (cmd_ours, env_ours, REPO)
            r = run_measured(cmd, env, cwd)
            r["load_after"] = machine()["load"]
            runs[side].append(r)
            print(f"  pair {i + 1} {side:8s}: process {r['process_s']:7.1f} s, pipeline {r['pipeline_s']:7.1f} s, "
                  f"{r['tile_s']:6.1f} s/tile, tiles {r['tiles_run']}/{r['tiles_total']}, "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB, load {r['load_after']}", flush=True)
    import numpy as np

    par = parity(np.load(work / "textseg.npy"), np.load(work / "authors.npy"))
    s_ours, s_theirs = summarise(runs["textseg"]), summarise(runs["authors"])
    print("medians (TextSeg / authors):")
    for key, label in (("process_s", "process wall s"), ("pipeline_s", "pipeline s"), ("tile_s", "s per tile"),
                       ("peak_rss_gib", "peak RSS GiB"), ("tiles_run", "tiles run")):
        print(f"  {label:15s}: {s_ours[key]['median']:8.2f} / {s_theirs[key]['median']:8.2f}  "
              f"({ratio_line(s_ours, s_theirs, key)})")
    print(f"parity (model grid, last run of each side): max prob diff {par['max_prob_diff']:.2e}, "
          f"mask voxels differ {par['mask_voxels_differ']} = {par['mask_differ_pct']:.4f} % of the masks' union "
          f"(masks: TextSeg {par['mask_voxels_ours']}, authors {par['mask_voxels_theirs']} of {par['grid_voxels']} voxels; "
          f"{par['near_threshold_voxels']} voxels within 0.01 of the threshold)")
    print("  s/tile: authors = their model forward per tile; TextSeg = its whole sliding window "
          "(forward + blending) per tile run")
    print(f"machine load average at the end: {machine()['load']}")
    if a.json:
        a.json.write_text(json.dumps({"machine": m0, "args": {k: str(v) for k, v in vars(a).items()},
                                      "runs": runs, "summary": {"textseg": s_ours, "authors": s_theirs},
                                      "parity": par}, indent=1))


if __name__ == "__main__":
    main()
