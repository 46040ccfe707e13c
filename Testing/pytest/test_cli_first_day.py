"""The first-day prompts and outputs: the model's vocabulary, refusals that name trained terms,
``--skip-unknown``, the nothing-found exit code, the table, progress lines on a pipe."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from _bundled_helpers import shipped_model_available
from _engine_helpers import find_data
from TextSegLib.cli.main import main

needs_mini = pytest.mark.skipif(not shipped_model_available(), reason="the shipped textseg-mini weights are absent")


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mini_ct_terms() -> list[str]:
    from TextSegLib.models.catalog import model_vocabulary

    return model_vocabulary("textseg-mini")[1]["ct"]


def test_models_terms_lists_the_vocabulary(capsys):
    assert main(["models", "terms", "textseg-mini", "--modality", "ct"]) == 0
    out = capsys.readouterr().out
    assert "textseg-mini on CT" in out and "MRI" not in out.split("\n")[0]
    assert "Liver" in out and "SCT^10200004^Liver" in out and "Left kidney" in out
    assert main(["terms", "--model", "textseg-mini", "--all", "--modality", "ct"]) == 0
    assert capsys.readouterr().out == out  # the same listing from `terms --all`
    assert main(["models", "terms", "textseg-mini"]) == 0
    assert "textseg-mini on MRI" in capsys.readouterr().out


def test_terms_without_match_points_to_the_listing(capsys):
    assert main(["terms", "asdfgh", "--model", "textseg-mini"]) == 0
    assert "textseg models terms textseg-mini" in capsys.readouterr().out


def test_refusal_names_trained_terms_in_one_line():
    from TextSegLib.knowledge.resolved import UnknownTermError, resolve_prompt

    for text in ("hippocampus", "asdfgh"):
        with pytest.raises(UnknownTermError) as e:
            resolve_prompt(text, modality="ct", model_terms={"ct": _mini_ct_terms()}, free_text_ok=False,
                           model_name="textseg-mini")
        msg = str(e.value)
        assert "\n" not in msg and "Aorta" in msg and "textseg models terms textseg-mini --modality ct" in msg


def test_ambiguity_list_tells_left_from_right():
    from TextSegLib.knowledge.resolved import AmbiguousPromptError, resolve_prompt

    with pytest.raises(AmbiguousPromptError) as e:
        resolve_prompt("iliac", modality="ct", model_terms={"ct": _mini_ct_terms()}, free_text_ok=False)
    msg = str(e.value)
    assert "46027005 + Left" in msg and "46027005 + Right" in msg


def test_table_header_aligns_with_a_short_name():
    from TextSegLib.measurements import Measurement, format_table

    head, row = format_table([Measurement("Liver", True, 1234, 630.6, mean=90.0, std=19.0, min=-37, max=181)], "HU")
    assert head.index("volume") + len("volume") == row.index("mL") + len("mL")
    assert head.index("voxels") + len("voxels") == row.index("1,234") + len("1,234")


def test_progress_is_one_line_per_stage_on_a_pipe():
    from TextSegLib.cli.progress import StageProgress

    class Pipe(io.StringIO):
        def isatty(self):
            return False

    import click

    buf = Pipe()
    p = StageProgress("textseg-mini", stream=buf)
    lines = []
    orig = click.echo
    try:
        click.echo = lambda s, err=False: lines.append(s)
        for i in range(37):
            p("tiles", i, 36)
        p("postprocess", 1, 1)
    finally:
        click.echo = orig
    p.close()
    assert buf.getvalue() == ""  # no bar, no carriage returns
    assert [ln.split(":")[0] for ln in lines] == ["textseg-mini tiles", "textseg-mini postprocess"]
    assert "36 of 36" in lines[0]


def _air(tmp_path):
    from TextSegLib.io import write_volume
    from TextSegLib.volume import Volume

    arr = np.full((40, 40, 16), -1000, np.int16)
    arr[8:32, 8:32, :] = 20
    path = tmp_path / "air.nii.gz"
    write_volume(Volume(arr, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    return path


@needs_mini
def test_nothing_found_exits_3_and_writes_the_table(tmp_path, capsys, one_thread):
    img = _air(tmp_path)
    stats = tmp_path / "t.csv"
    rc = main(["segment", str(img), "-p", "liver", "-p", "spleen", "-o", str(tmp_path / "o.seg.nrrd"),
               "--stats", str(stats), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 3, err
    rows = list(csv.DictReader(stats.open()))
    assert [(r["name"], r["found"]) for r in rows] == [("Liver", "False"), ("Spleen", "False")]
    assert not (tmp_path / "o.seg.nrrd").exists()
    modality_line = next(ln for ln in err.splitlines() if ln.startswith("Modality:"))
    assert len(modality_line) < 100
    assert "\r" not in err  # stderr is not a terminal here: no tqdm redraws


@needs_mini
def test_skip_unknown_segments_the_rest(tmp_path, capsys, one_thread):
    ct = find_data("example_ct_sm.nii.gz")
    stats = tmp_path / "t.csv"
    args = ["segment", str(ct), "-p", "liver", "-p", "hippocampus", "-o", str(tmp_path / "o.seg.nrrd"),
            "--stats", str(stats), "--device", "cpu", "--modality", "ct", "--roi", "20,140,100,110,230,180"]
    assert main(args) == 2  # the default for scripts: the whole run is refused
    assert "hippocampus" in capsys.readouterr().err and not stats.exists()
    rc = main(args + ["--skip-unknown"])
    err = capsys.readouterr().err
    assert rc == 4, err
    assert "1 skipped" in err and "skipped (Hippocampus" in err
    rows = {r["name"]: r for r in csv.DictReader(stats.open())}
    assert rows["Liver"]["found"] == "True" and rows["hippocampus"]["reason"].startswith("skipped: ")
    assert (tmp_path / "o.seg.nrrd").exists()


def test_refine_prints_a_readable_summary_naming_the_label(tmp_path, capsys):
    import SimpleITK as sitk

    from _refine_helpers import two_spheres
    from TextSegLib.refine.algorithms import growcut_available

    if not growcut_available():
        pytest.skip("slicer-core (GrowCut) not installed")
    vol, a, b = two_spheres()
    labels = np.zeros(vol.shape, np.uint8)
    labels[a] = 3
    labels[18:22, 2:5, 2:5] = 7
    for name, arr in (("ct.nii.gz", vol.array), ("seg.nii.gz", labels)):
        sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0))), str(tmp_path / name))
    (tmp_path / "seg_labels.csv").write_text("file,label,name\nseg.nii.gz,3,Liver\nseg.nii.gz,7,Spleen\n")
    base = ["refine", str(tmp_path / "ct.nii.gz"), str(tmp_path / "seg.nii.gz"), "--pos", "34,20,18", "--ijk"]
    assert main(base + ["--label", "5", "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "3 (Liver), 7 (Spleen)" in capsys.readouterr().err
    assert main(base + ["--label", "3", "-o", str(tmp_path / "o.nii.gz")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Refined label 3 (Liver) with builtin") and "changed" in out and "{" not in out


def test_demo_colours_tell_liver_from_aorta():
    from TextSegLib.knowledge.resolved import resolve_prompt
    from TextSegLib.overlay import legible_colors

    rec = {n: resolve_prompt(n).color for n in ("liver", "spleen", "aorta", "left kidney")}
    assert np.linalg.norm(np.subtract(rec["liver"], rec["aorta"])) < 0.25  # Slicer's colours: alike
    shown = legible_colors(rec)
    assert shown["liver"] == tuple(rec["liver"])  # the first keeps its recommended colour
    names = list(shown)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(np.subtract(shown[a], shown[b])) >= 0.25, (a, b)


def test_demo_overlay_is_three_axial_levels(tmp_path):
    from TextSegLib.overlay import axial_levels, write_overlay_png
    from TextSegLib.volume import Volume

    arr = np.full((30, 30, 20), 40, np.int16)
    mask = np.zeros(arr.shape, bool)
    mask[10:20, 10:20, 4:16] = True
    assert axial_levels(mask) == [7, 10, 12]
    vol = Volume(arr, np.eye(4), modality="ct")
    p = write_overlay_png(vol, {"Liver": mask}, {"Liver": (0.87, 0.51, 0.40)}, tmp_path / "o.png", axial_only=True)
    assert p.stat().st_size > 1000


@needs_mini
def test_batch_skip_unknown_reports_skipped_prompts(tmp_path, capsys, one_thread):
    import json as _json

    scans = tmp_path / "scans"
    scans.mkdir()
    _air(tmp_path).rename(scans / "air.nii.gz")
    base = ["batch", str(scans), "-p", "liver", "-p", "hippocampus", "--modality", "ct", "--device", "cpu",
            "--threads", "1", "--no-thumbnails"]
    assert main(base + ["-o", str(tmp_path / "run0")]) == 2  # default: refused before any case
    assert "hippocampus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(base + ["-o", str(tmp_path / "run"), "--skip-unknown"])
    assert e.value.code == 4
    assert "skipped (--skip-unknown): hippocampus" in capsys.readouterr().err
    rows = _json.loads((tmp_path / "run" / "cases" / "air" / "measurements.json").read_text())["rows"]
    by = {r["structure"]: r for r in rows}
    assert by["hippocampus"]["found"] is False and "not a structure" in by["hippocampus"]["reason"]
    assert "Liver" in by
