"""The pure helpers of benchmarks/bench_sat_vs_authors.py (the benchmark itself is not a test)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path[:0] = [str(BENCH), str(BENCH / "sat_authors")]

import bench_sat_vs_authors as bench  # noqa: E402
from common import parity, query_embeddings, summarise  # noqa: E402


def test_parity_counts_disagreeing_mask_voxels_and_max_difference():
    theirs = np.zeros((2, 4, 4, 2), np.float32)
    theirs[0, :2] = 0.9  # 16 voxels in prompt 0's mask
    ours = theirs.copy()
    ours[0, 0, 0, 0] = 0.4  # one mask voxel lost (diff 0.5)
    ours[1, 3, 3, 1] = 0.6  # one voxel gained in prompt 1 (diff 0.6)
    ours[1, 2, 2, 0] = 0.01  # below threshold: changes the max only if larger
    p = parity(ours, theirs)
    assert p["mask_voxels_differ"] == 2
    assert p["mask_voxels_theirs"] == 16 and p["mask_voxels_ours"] == 16
    assert p["mask_differ_pct"] == pytest.approx(100 * 2 / 17)  # union: 16 + the gained voxel
    assert p["max_prob_diff"] == pytest.approx(0.6)
    assert p["max_prob_diff_per_prompt"] == pytest.approx([0.5, 0.6])
    assert p["near_threshold_voxels"] == 0 and p["grid_voxels"] == 64
    theirs[1, 0, 0, 0] = 0.505
    assert parity(ours, theirs)["near_threshold_voxels"] == 1
    same = parity(theirs, theirs)
    assert same["max_prob_diff"] == 0 and same["mask_differ_pct"] == 0
    assert parity(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)))["mask_differ_pct"] == 0  # empty masks
    with pytest.raises(ValueError, match="shape"):
        parity(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 3)))


def test_query_rows_are_fixed_per_term_and_distinct():
    a = query_embeddings(["liver", "Spleen"])
    assert a.shape == (2, 768) and a.dtype == np.float32
    assert np.array_equal(a, query_embeddings(["LIVER", "spleen"]))  # the authors lower-case labels
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(query_embeddings(["liver"], "mri"), a[:1])


def test_summary_medians_and_ranges():
    s = summarise([{"process_s": 3.0, "peak_rss_gib": 2.0}, {"process_s": 1.0, "peak_rss_gib": 4.0},
                   {"process_s": 2.0, "peak_rss_gib": 3.0}])
    assert s["runs"] == 3 and s["process_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert "tile_s" not in s


def _error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_arguments_get_one_specific_line(tmp_path, capsys):
    assert "--image" in _error_of(["--image", str(tmp_path / "none.nii.gz")], capsys)
    assert "not a checkout" in _error_of(["--authors-repo", str(tmp_path)], capsys)
    assert "--pairs" in _error_of(["--pairs", "0"], capsys)
    assert "--prompts" in _error_of(["--prompts", " , "], capsys)
    a = bench.parse_args([])
    assert a.pairs == 3 and a.threads == 2 and a.image.is_file() and a.prompt_list[0] == "liver"


def test_checkout_at_another_commit_is_refused_with_the_fix(tmp_path):
    repo = tmp_path / "SAT"
    (repo / "evaluate").mkdir(parents=True)
    (repo / "evaluate" / "inference_engine.py").write_text("# stand-in\n")
    env = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *env, "commit", "-qm", "x"], check=True)
    a = bench.parse_args(["--authors-repo", str(repo)])
    with pytest.raises(SystemExit) as exc:
        bench.authors_checkout(a)
    msg = str(exc.value)
    assert "5676be5" in msg and "git -C" in msg and "checkout" in msg and "\n" not in msg
