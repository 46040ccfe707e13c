"""The "uncertain" presence state shown everywhere (issue 21): segment names, CLI table and CSVs,
the remote wire format (and an older server's results without it), with constructed results."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from _remote_helpers import KEY, SlabEngine, running_server, small_volume
from TextSegLib.engine.base import EngineResult
from TextSegLib.engine.results import to_segmentation
from TextSegLib.knowledge.resolved import resolve_prompts
from TextSegLib.measurements import format_table, measure_result


def constructed(volume, found=("liver",), uncertain=("spleen",), missing=("pancreas",)) -> EngineResult:
    """liver found (0.97), spleen uncertain (0.55), pancreas not found (0.05)."""
    keys = [*found, *uncertain, *missing]
    prompts = {p.text: p for p in resolve_prompts(keys, modality="ct")}
    masks = {k: np.zeros(volume.shape, bool) for k in keys}
    for n, k in enumerate([*found, *uncertain]):
        masks[k][n * 3:n * 3 + 3, :4, :3] = True
    res = EngineResult(masks=masks, prompts=prompts, found={k: bool(masks[k].any()) for k in keys},
                       presence={"liver": 0.97, "spleen": 0.55, "pancreas": 0.05})
    for k in uncertain:
        res.mark_uncertain(k, f"{k}: the evidence is in between")
    for k in missing:
        res.mark_not_found(k, f"{k}: not in the scan")
    return res


def test_to_segmentation_names_uncertain_with_question_mark():
    vol = small_volume()
    res = constructed(vol)
    seg = to_segmentation(vol, res, include_not_found=True)
    by = {s.meta["prompt"]: s for s in seg}
    assert by["spleen"].name == "Spleen ?" and by["liver"].name == "Liver"
    assert by["spleen"].meta["presence_state"] == "uncertain" and by["spleen"].meta["presence_probability"] == 0.55
    assert by["liver"].meta["presence_state"] == "found" and by["pancreas"].meta["presence_state"] == "not found"
    assert by["spleen"].mask.sum() == 36  # the mask is kept


def test_table_marks_uncertain_with_probability():
    vol = small_volume()
    res = constructed(vol)
    rows = measure_result(res, vol, res.prompts.values())
    lines = format_table(rows, "HU")
    spleen = next(line for line in lines if "Spleen" in line)
    liver = next(line for line in lines if "Liver" in line)
    assert "? uncertain (presence 0.55): review" in spleen and "uncertain" not in liver
    assert [r.presence_state for r in rows] == ["found", "uncertain", "not found"]
    row = rows[1].row()
    assert list(row)[-2:] == ["state", "presence_probability"] and row["presence_probability"] == 0.55
    assert "bbox_s_max" in row and "mean_probability" in row  # the old columns stay


def test_cli_segment_through_server_writes_state_columns(tmp_path):
    """textseg segment --server: the table, the stats CSV and the labels CSV carry the state."""
    from click.testing import CliRunner

    from TextSegLib.cli.main import cli
    from TextSegLib.io import read_seg_nrrd, write_volume

    class Unsure(SlabEngine):
        def segment(self, volume, prompts, **kw):
            res = super().segment(volume, prompts, **kw)
            res.presence = {"bright": 0.61, "dark": 0.99}
            res.mark_uncertain("bright", "bright: weak evidence")
            return res

    src = tmp_path / "small.nrrd"
    write_volume(small_volume(), src)
    out, stats = tmp_path / "out.seg.nrrd", tmp_path / "stats.csv"
    with running_server(lambda: Unsure(), api_key=KEY) as url:
        r = CliRunner().invoke(cli, ["segment", str(src), "-p", "bright", "-p", "dark", "-o", str(out), "--nifti",
                                     "--modality", "ct", "--stats", str(stats), "--server", url, "--api-key", KEY])
    assert r.exit_code == 0, r.output
    assert "? uncertain (presence 0.61): review" in r.output
    table = {row["name"]: row for row in csv.DictReader(stats.open())}
    assert table["bright"]["state"] == "uncertain" and float(table["bright"]["presence_probability"]) == 0.61
    assert table["dark"]["state"] == "found" and "volume_ml" in table["dark"]
    labels = {row["name"]: row for row in csv.DictReader((tmp_path / "out_labels.csv").open())}
    assert labels["bright ?"]["state"] == "uncertain" and labels["dark"]["presence_probability"] == "0.9900"
    assert sorted(s.name for s in read_seg_nrrd(out).segments) == ["bright ?", "dark"]


def test_remote_result_carries_uncertain_and_presence():
    from TextSegLib.remote import RemoteEngine

    class Unsure(SlabEngine):
        def segment(self, volume, prompts, **kw):
            res = super().segment(volume, prompts, **kw)
            res.presence = {"bright": 0.4}
            res.mark_uncertain("bright", "bright: weak evidence")
            return res

    engine = Unsure()
    with running_server(lambda: engine, api_key=KEY) as url:
        res = RemoteEngine(url, KEY).segment(small_volume(), ["bright", "dark"])
    assert res.state("bright") == "uncertain" and res.state("dark") == "found"
    assert res.presence == {"bright": 0.4}
    assert "uncertain" not in res.info and "presence" not in res.info


def test_old_server_result_without_uncertain_is_read():
    """A result message of a server from before the uncertain state (no 'uncertain'/'presence' keys)."""
    from TextSegLib.remote import RemoteEngine, protocol
    from TextSegLib.remote.client import RemoteJob

    vol = small_volume()
    client = RemoteEngine("http://127.0.0.1:9", KEY)
    (p,) = resolve_prompts(["bright"], modality="ct", model_terms=["bright", "dark"])
    mask = np.ones(vol.shape, bool)
    msg = protocol.encode_result(vol.shape, {p.term: mask}, None, {"total": 0.1},
                                 {"engine": "old", "found": {p.term: True}, "reasons": {p.term: ""}})
    masks, probs, timings, info = protocol.decode_result(msg)
    job = RemoteJob("j1", [p], [p.term], vol.shape, 0.0, image="x")
    res = client.result_of(job, masks, probs, timings, info, len(msg), 0.0)
    assert res.state(p.text) == "found" and res.uncertain == set() and res.presence == {}


def test_ray_engine_copies_uncertain_and_presence():
    """RayEngine (the front's engine over a Ray handle) keeps the replica's three-state verdict."""
    pytest.importorskip("TextSegLib.remote.ray_serve")
    from TextSegLib.remote.ray_serve import RayEngine

    vol = small_volume()
    inner = SlabEngine().segment(vol, ["bright", "dark"])
    inner.presence = {"bright": 0.5}
    inner.mark_uncertain("bright", "weak")

    class Response:
        def result(self, timeout_s=None):
            return inner

    class Method:
        def remote(self, *a):
            return Response()

    class Handle:
        segment = Method()

    res = RayEngine(Handle(), "replica-0").segment(vol, ["bright", "dark"])
    assert res.uncertain == {"bright"} and res.presence == {"bright": 0.5} and res.state("dark") == "found"
