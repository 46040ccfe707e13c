"""The QC report: one static ``report.html`` in the run folder (no server, no internet).

One row per case: status, modality, time, each structure's volume (not found, uncertain and volume
outliers marked), the error of a failed case, and the overlay thumbnails (``cases/<case>/qc.png``,
beside the page). Cases with an uncertain structure come first (a reviewer should look at them).
Columns sort on click; the filter shows failed cases, cases with an uncertain structure, with a
structure not found, or with a volume outlier. When every image has loaded (or failed to), the page
sets ``data-images-loaded`` / ``data-images-broken`` on ``<body>`` (for headless checks);
``report.html#filter=failed`` opens it filtered.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Sequence

from .outputs import CASES
from .tables import atomic_write_bytes, row_state
from .worker import THUMBNAIL

_CSS = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}h1{font-size:18px;margin:0 0 4px}
.meta{color:#555;margin-bottom:10px}.bar{margin:8px 0}.bar>*{margin-right:10px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f2f2f2;cursor:pointer;position:sticky;top:0;user-select:none}th.sorted-asc:after{content:" \\25B2"}
th.sorted-desc:after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td.status{background:#fbd5d5}tr.done td.status{background:#d8f3dc}.nf{color:#999;font-style:italic}
.out{background:#ffe8a3;font-weight:600}.unc{background:#e3d7fb}.err{color:#a00;max-width:320px;overflow-wrap:anywhere}img.qc{width:300px;display:block}
.counts span{display:inline-block;margin-right:12px}
.legend{font-size:11px;color:#444;max-width:300px}.chip{display:inline-block;width:9px;height:9px;margin:0 3px 0 6px;border-radius:2px}
"""

_JS = """
(function(){
  var table=document.getElementById('cases'), body=table.tBodies[0];
  var rows=Array.prototype.slice.call(body.rows);
  function apply(){
    var f=document.getElementById('filter').value, q=document.getElementById('search').value.toLowerCase(), n=0;
    rows.forEach(function(r){
      var ok=(f==='all')||(r.dataset[f]==='1');
      if(ok&&q) ok=r.dataset.case.toLowerCase().indexOf(q)>=0;
      r.style.display=ok?'':'none'; if(ok) n++;
    });
    document.getElementById('shown').textContent=n;
  }
  var m=/filter=([a-z]+)/.exec(location.hash); if(m) document.getElementById('filter').value=m[1];
  document.getElementById('filter').onchange=apply; document.getElementById('search').oninput=apply;
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.onclick=function(){
      var asc=!th.classList.contains('sorted-asc');
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(o){o.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var num=th.dataset.type==='num';
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v, y=b.cells[i].dataset.v;
        if(num){x=x===''?-Infinity:+x; y=y===''?-Infinity:+y; return asc?x-y:y-x;}
        return asc?x.localeCompare(y):y.localeCompare(x);
      });
      rows.forEach(function(r){body.appendChild(r);});
    };
  });
  var imgs=document.querySelectorAll('img.qc'), left=imgs.length, ok=0, bad=0;
  function done(){ if(--left<=0){document.body.dataset.imagesLoaded=ok;document.body.dataset.imagesBroken=bad;} }
  if(!left){document.body.dataset.imagesLoaded=0;document.body.dataset.imagesBroken=0;}
  Array.prototype.forEach.call(imgs,function(im){
    if(im.complete){ if(im.naturalWidth>0) ok++; else bad++; done(); }
    else { im.onload=function(){ok++;done();}; im.onerror=function(){bad++;done();}; }
  });
  apply();
})();
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _rgb(color) -> str:
    r, g, b = (int(round(255 * float(v))) for v in list(color)[:3])
    return f"rgb({r},{g},{b})"


def _td(text: str, value, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-v="{_e(value)}">{text}</td>'


def has_uncertain(case: dict) -> bool:
    """Whether a case has a structure in the "uncertain" state."""
    return any(row_state(r) == "uncertain" for r in case.get("rows", []))


def build_report(run_dir: Path, cases: Sequence[dict], structures: Sequence[str], *, title: str = "",
                 settings: dict | None = None) -> Path:
    """Write ``report.html``. ``cases``: one dict per case with ``case_id``, ``state``, ``error``,
    ``modality``, ``seconds``, ``rows`` (its measurement rows, outliers marked) and ``colors``
    (structure -> RGB, for the picture's legend)."""
    run_dir = Path(run_dir)
    lazy = ' loading="lazy"' if len(cases) > 200 else ""
    counts = {"done": 0, "failed": 0, "pending": 0}
    head = ['<th data-type="str">case</th>', '<th data-type="str">status</th>', '<th data-type="str">modality</th>',
            '<th data-type="num">time (s)</th>']
    head += [f'<th data-type="num">{_e(s)} (mL)</th>' for s in structures]
    head += ['<th data-type="str">error / notes</th>', '<th data-type="str">overlays</th>']
    body = []
    flagged = [(has_uncertain(c), c) for c in cases]
    for unc, c in sorted(flagged, key=lambda f: not f[0]):  # uncertain first; stable: otherwise as given
        state = c.get("state") or "pending"
        counts[state if state in counts else "pending"] += 1
        by = {r["structure"]: r for r in c.get("rows", [])}
        nf = any(not r.get("found") for r in by.values())
        out = any(r.get("outlier") for r in by.values())
        cells = [_td(_e(c["case_id"]), c["case_id"]), _td(_e(state), state, "status"),
                 _td(_e(c.get("modality", "")), c.get("modality", "")),
                 _td(f"{c['seconds']:.1f}" if c.get("seconds") is not None else "", c.get("seconds", ""), "num")]
        notes = []
        for s in structures:
            r = by.get(s)
            if r is None:
                cells.append(_td("", "", "num"))
            elif not r.get("found"):
                cells.append(_td('<span class="nf">not found</span>', -1, "num"))
                if r.get("reason"):
                    notes.append(f"{s}: {r['reason']}")
            else:
                v = float(r["volume_ml"])
                cls = "num out" if r.get("outlier") else "num"
                if row_state(r) == "uncertain":
                    p = r.get("presence_probability")
                    cells.append(_td(f"{v:.1f} ?", v, cls + " unc"))
                    notes.append(f"{s}: uncertain" + (f" (presence {float(p):.2f})" if p is not None else "")
                                 + ": review")
                else:
                    cells.append(_td(f"{v:.1f}", v, cls))
        err = c.get("error") or ""
        note = _e(err) + ("<br>" if err and notes else "") + "<br>".join(_e(n) for n in notes)
        cells.append(_td(note, err, "err" if err else ""))
        img = ""
        if state == "done" and (run_dir / CASES / c["case_id"] / THUMBNAIL).is_file():
            src = f"{CASES}/{c['case_id']}/{THUMBNAIL}"
            img = f'<a href="{_e(src)}"><img class="qc" src="{_e(src)}" alt="overlays of {_e(c["case_id"])}"{lazy}></a>'
            # one chip per row of the picture (found structures, in order), in its colour
            chips = [f'<span class="chip" style="background:{_rgb(c["colors"][r["structure"]])}"></span>{_e(r["structure"])}'
                     for r in c.get("rows", []) if r.get("found") and r["structure"] in (c.get("colors") or {})]
            img += ('<div class="legend">' + " ".join(chips) + "</div>") if chips else ""
        cells.append(_td(img, ""))
        flags = (f' data-failed="{int(state == "failed")}" data-notfound="{int(nf)}" data-outlier="{int(out)}"'
                 f' data-uncertain="{int(unc)}"'
                 f' data-done="{int(state == "done")}" data-case="{_e(c["case_id"])}"')
        body.append(f'<tr class="{_e(state)}"{flags}>' + "".join(cells) + "</tr>")
    n_unc = sum(unc for unc, _ in flagged)
    s = settings or {}
    meta = (f"{len(cases)} cases · generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
            + (f" · model {_e(s.get('model'))}" if s.get("model") else "")
            + (f" · prompts: {_e(', '.join(s.get('prompts', [])))}" if s.get("prompts") else ""))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title or 'TextSeg cohort QC')}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(title or 'TextSeg cohort QC')}</h1>
<div class="meta">{meta}</div>
<div class="counts"><span id="n-done">done: {counts['done']}</span><span id="n-failed">failed: {counts['failed']}</span><span id="n-pending">not run yet: {counts['pending']}</span><span id="n-uncertain">uncertain: {n_unc} (listed first)</span></div>
<div class="bar"><label>show <select id="filter">
<option value="all">all cases</option><option value="failed">failed</option><option value="uncertain">a structure uncertain (review)</option><option value="notfound">a structure not found</option>
<option value="outlier">volume outlier (&gt; 3 MAD)</option><option value="done">done</option></select></label>
<label>case <input id="search" type="search" placeholder="filter by case id"></label>
<span><span id="shown">{len(cases)}</span> shown</span>
<a href="measurements.csv">measurements.csv</a><a href="summary.csv">summary.csv</a><a href="manifest.jsonl">manifest.jsonl</a></div>
<table id="cases"><thead><tr>{''.join(head)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<script type="application/json" id="settings">{_e(json.dumps(s, default=str))}</script>
<script>{_JS}</script>
</body></html>
"""
    return atomic_write_bytes(run_dir / "report.html", page.encode("utf-8"))
