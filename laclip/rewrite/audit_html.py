"""The audit of a rewrite set (laclip.rewrite.audit) as one self-contained HTML page: inline style, no
script, no external asset; every piece of user text (captions, rewrites, ids, reasons) escaped with the
standard library's html.escape."""

from __future__ import annotations

import datetime as dt
from html import escape

from laclip import __version__
from laclip.rewrite.audit import Audit, histogram, percentiles

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.keep { background: #eef8ee; } td.rejected { background: #fbeeee; }
.verdict { display: block; font-size: .85em; color: #555; margin-top: .2em; }
.bar { display: inline-block; height: .8em; background: #6b8fd6; vertical-align: middle; }
p.note { color: #555; }
"""


def _cell(value, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(value))}</td>"


def _table(head: list[str], rows: list[str], table_id: str) -> str:
    heads = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<table id="{table_id}"><thead><tr>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render(a: Audit) -> str:
    names = list(a.sources)
    reasons = sorted({r for s in a.sources.values() for r in s.reasons})
    parts = [f"<h1>Rewrite set {escape(a.rewrite_id)} of {escape(a.dataset)}</h1>"]
    fp = a.record.get("fingerprint") or {}
    facts = [("engine", fp.get("engine") or a.record.get("kind") or "?"), ("model", fp.get("model") or "-"),
             ("faithfulness check", fp.get("faithfulness") or "-"), ("filter version", fp.get("filter_version", "-")),
             ("shards read", f"{a.shards_read} of {a.shards_total}")]
    parts.append("<p>" + " &middot; ".join(f"{escape(k)}: <b>{escape(str(v))}</b>" for k, v in facts) + "</p>")

    rows = []
    for s in a.sources.values():
        share = f"{s.kept / s.rows:.1%}" if s.rows else "-"
        rows.append("<tr>" + _cell(s.name) + _cell(f"{s.rows:,}", "n") + _cell(f"{s.kept:,}", "n") +
                    _cell(share, "n") + "".join(_cell(f"{s.reasons.get(r, 0):,}", "n") for r in reasons) + "</tr>")
    parts += ["<h2>Kept and rejected, by reason</h2>",
              _table(["source", "rows", "kept", "kept %", *reasons], rows, "verdicts")]

    objection_rows = []
    for s in a.sources.values():
        for reason, words in sorted(s.objections.items()):
            top = ", ".join(f"{w} ({n})" for w, n in words.most_common(8))
            objection_rows.append("<tr>" + _cell(s.name) + _cell(reason) + _cell(top) + "</tr>")
    if objection_rows:
        parts += ["<h2>Words objected to most often</h2>",
                  _table(["source", "reason", "words (times)"], objection_rows, "objections")]

    for title, attr, tid in (("Length of the kept rewrites (words)", "lengths", "lengths"),
                             ("Words changed from the caption (kept rewrites)", "changed", "changed")):
        stats = {s.name: percentiles(getattr(s, attr)) for s in a.sources.values()}
        keys = ["min", "p10", "median", "p90", "max", "mean"]
        rows = ["<tr>" + _cell(n) + "".join(_cell(stats[n].get(k, "-"), "n") for k in keys) + "</tr>" for n in names]
        hist = {s.name: histogram(getattr(s, attr)) for s in a.sources.values()}
        buckets = [b for b, _ in next(iter(hist.values()), [])]
        most = max((c for h in hist.values() for _, c in h), default=0) or 1
        hrows = []
        for n in names:
            cells = "".join(f'<td class="n">{c:,} <span class="bar" style="width:{40 * c // most}px"></span></td>'
                            for _, c in hist[n])
            hrows.append("<tr>" + _cell(n) + cells + "</tr>")
        parts += [f"<h2>{escape(title)}</h2>", _table(["source", *keys], rows, tid),
                  _table(["source", *buckets], hrows, tid + "-histogram")]

    sample_rows = []
    for row in a.sample:
        cells = [_cell(row["key"]), _cell(row["caption"])]
        for n in names:
            text, verdict = row.get(n, ("", "-"))
            kept = verdict == "keep"
            shown = text if kept else "(fell back to the caption)"
            cells.append(f'<td class="{"keep" if kept else "rejected"}">{escape(shown)}'
                         f'<span class="verdict">{escape(verdict)}</span></td>')
        sample_rows.append("<tr>" + "".join(cells) + "</tr>")
    parts += [f"<h2>Sample of {len(a.sample)} rows</h2>",
              '<p class="note">A rejected rewrite is not stored: its column holds the caption it fell back to.</p>',
              _table(["key", "caption", *names], sample_rows, "sample")]
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    parts.append(f'<p class="note">laclip {escape(__version__)}, {escape(when)}</p>')
    title = escape(f"laclip audit: {a.dataset} / {a.rewrite_id}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
