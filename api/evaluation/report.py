"""The evaluation report: one self-contained HTML file with inline SVG charts.

No JavaScript, no fonts or styles from a CDN: the file opens offline and can be mailed.
Every piece of text that comes from questions, answers or documents goes through
``html.escape``.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

ROUTES = ("glossary", "fact", "rag", "refuse")
COLORS = {"ours": "#2b6cb0", "baseline": "#c05621"}
ROUTE_COLORS = {"glossary": "#6b46c1", "fact": "#2f855a", "rag": "#2b6cb0", "refuse": "#718096", "error": "#c53030"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:24px;color:#1a202c}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse} td,th{border:1px solid #e2e8f0;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f7fafc} .num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#276749;font-weight:600} .bad{color:#c53030;font-weight:600} .na{color:#a0aec0}
.muted{color:#718096;font-size:12px} .q td{max-width:360px} .wrong{background:#fff5f5}
.unsup{background:#fed7d7;border-radius:3px;padding:0 2px} .sup{background:#c6f6d5;border-radius:3px;padding:0 2px}
details summary{cursor:pointer;color:#2b6cb0} .charts{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
code{background:#f7fafc;padding:0 3px}
"""


# --- SVG charts ---------------------------------------------------------------------------
def _svg(width: int, height: int, body: Iterable[str], title: str) -> str:
    return (f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start", fill: str = "#1a202c",
          weight: str = "normal", rotate: float | None = None) -> str:
    rot = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}" font-family="sans-serif"{rot}>{escape(str(s))}</text>')


def confusion_svg(matrix: dict[str, dict[str, int]], title: str = "Route confusion matrix") -> str:
    """Rows = expected route, columns = route taken; cells shaded by the row's share.

    >>> "<svg" in confusion_svg({"fact": {"fact": 2, "rag": 1}, "rag": {"fact": 0, "rag": 3}})
    True
    """
    labels = [lab for lab in matrix if any(matrix[lab].values()) or any(r.get(lab) for r in matrix.values())]
    labels = labels or list(matrix)
    cell, left, top = 64, 90, 70
    w, h = left + cell * len(labels) + 20, top + cell * len(labels) + 40
    body = [_text(left + cell * len(labels) / 2, 18, title, 14, "middle", weight="bold"),
            _text(left + cell * len(labels) / 2, 40, "route taken →", 12, "middle", "#4a5568"),
            _text(16, top + cell * len(labels) / 2, "expected ↓", 12, "middle", "#4a5568", rotate=-90)]
    for j, lab in enumerate(labels):
        body.append(_text(left + cell * j + cell / 2, top - 8, lab, 12, "middle"))
    for i, exp in enumerate(labels):
        row = matrix.get(exp, {})
        total = sum(row.values())
        body.append(_text(left - 8, top + cell * i + cell / 2 + 4, exp, 12, "end"))
        for j, got in enumerate(labels):
            n = row.get(got, 0)
            frac = n / total if total else 0.0
            base = (47, 133, 90) if exp == got else (197, 48, 48)
            fill = "#f7fafc" if n == 0 else "rgb({},{},{})".format(
                *(round(255 - (255 - c) * (0.25 + 0.75 * frac)) for c in base))
            x, y = left + cell * j, top + cell * i
            body.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}" stroke="#e2e8f0"/>')
            body.append(_text(x + cell / 2 - 1, y + cell / 2 + 5, str(n), 15, "middle",
                              "#fff" if frac > 0.55 else "#1a202c", "bold"))
    return _svg(w, h, body, title)


def bars_svg(metrics: dict[str, dict[str, float | None]], title: str = "Ours vs baseline") -> str:
    """Grouped horizontal bars, one group per metric (values 0..1), one bar per system.

    >>> "<rect" in bars_svg({"answer correctness": {"ours": 0.8, "baseline": 0.5}})
    True
    """
    systems = sorted({s for v in metrics.values() for s in v}, key=lambda s: (s != "ours", s))
    bar, gap, left, width = 16, 14, 200, 300
    group_h = bar * len(systems) + gap
    h = 50 + group_h * len(metrics) + 20
    body = [_text(left + width / 2, 18, title, 14, "middle", weight="bold")]
    for k, s in enumerate(systems):
        body.append(f'<rect x="{left + k * 110}" y="28" width="12" height="12" fill="{COLORS.get(s, "#999")}"/>')
        body.append(_text(left + k * 110 + 16, 38, s, 12))
    for gi, (name, vals) in enumerate(metrics.items()):
        y0 = 50 + gi * group_h
        body.append(_text(left - 8, y0 + group_h / 2 - 2, name, 12, "end"))
        for k, s in enumerate(systems):
            v = vals.get(s)
            y = y0 + k * bar
            if v is None:
                body.append(_text(left + 4, y + bar - 4, "n/a", 11, fill="#a0aec0"))
                continue
            body.append(f'<rect x="{left}" y="{y}" width="{max(1.0, width * float(v)):.1f}" height="{bar - 3}" '
                        f'fill="{COLORS.get(s, "#999")}"/>')
            body.append(_text(left + width * float(v) + 4, y + bar - 5, f"{float(v):.2f}", 11))
    body.append(f'<line x1="{left}" y1="46" x2="{left}" y2="{h - 16}" stroke="#4a5568"/>')
    return _svg(left + width + 60, h, body, title)


def latency_svg(series: dict[str, Sequence[float]], title: str = "Latency distribution (ms, log scale)") -> str:
    """One row per series: every answer as a dot, the p25-p75 box and the median line.

    >>> "<circle" in latency_svg({"ours · fact": [12.0, 30.5], "baseline": [900.0]})
    True
    """
    rows = [(k, [max(0.1, float(v)) for v in vals]) for k, vals in series.items() if vals]
    left, width, row_h, top = 150, 520, 34, 40
    every = [v for _, vals in rows for v in vals] or [1.0]
    lo = 10 ** math.floor(math.log10(min(every)))
    hi = 10 ** math.ceil(math.log10(max(every) * 1.001))
    if hi <= lo:
        hi = lo * 10

    def xpos(v: float) -> float:
        return left + width * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    h = top + row_h * max(1, len(rows)) + 40
    body = [_text(left + width / 2, 18, title, 14, "middle", weight="bold")]
    decade = lo
    while decade <= hi * 1.0001:
        x = xpos(decade)
        body.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{h - 30}" stroke="#e2e8f0"/>')
        label = f"{decade / 1000:g} s" if decade >= 1000 else f"{decade:g} ms"
        body.append(_text(x, h - 14, label, 11, "middle", "#4a5568"))
        decade *= 10
    for i, (name, vals) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = COLORS["baseline"] if name.startswith("baseline") else ROUTE_COLORS.get(name.split()[-1], COLORS["ours"])
        body.append(_text(left - 8, y + 4, f"{name} (n={len(vals)})", 12, "end"))
        q1, med, q3 = (_pct(vals, p) for p in (25, 50, 75))
        body.append(f'<rect x="{xpos(q1):.1f}" y="{y - 9:.1f}" width="{max(2.0, xpos(q3) - xpos(q1)):.1f}" '
                    f'height="18" fill="{color}" fill-opacity="0.18" stroke="{color}"/>')
        body.append(f'<line x1="{xpos(med):.1f}" y1="{y - 11:.1f}" x2="{xpos(med):.1f}" y2="{y + 11:.1f}" '
                    f'stroke="{color}" stroke-width="3"/>')
        for j, v in enumerate(vals):
            jitter = ((j * 7) % 11 - 5) * 1.2
            body.append(f'<circle cx="{xpos(v):.1f}" cy="{y + jitter:.1f}" r="2.6" fill="{color}" fill-opacity="0.6"/>')
    return _svg(left + width + 40, h, body, title)


def _pct(values: Sequence[float], q: float) -> float:
    xs = sorted(values)
    rank = (len(xs) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


# --- HTML ---------------------------------------------------------------------------------
HEADLINE = (
    ("overall accuracy", "overall_accuracy", "right answer, or a refusal where one was expected"),
    ("route accuracy", "route_accuracy", "route taken = expected route (the baseline has no routes)"),
    ("answer correctness", "answer_correctness", "every expected group has one alternative in the answer"),
    ("refusal precision", ("refusal", "precision"), "refusals that were right to refuse"),
    ("refusal recall", ("refusal", "recall"), "questions outside the knowledge base that were refused"),
    ("unsupported-number rate", "unsupported_number_rate", "numbers in answers found nowhere in the KB (lower is better)"),
    ("citation correctness", "citation_correctness", "a cited passage holds the expected fact (baseline: any of its k passages)"),
)


def _get(m: dict[str, Any], key: Any) -> Any:
    if isinstance(key, tuple):
        for k in key:
            m = (m or {}).get(k)
        return m
    return m.get(key)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return '<span class="na">–</span>'
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def _ms(v: Any) -> str:
    return '<span class="na">–</span>' if v is None else f"{float(v):,.0f}"


def _mark(flag: Any) -> str:
    if flag is None:
        return '<span class="na">·</span>'
    return '<span class="ok">✓</span>' if flag else '<span class="bad">✗</span>'


def render_report(result: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    metrics, cfg, records = result["metrics"], result.get("config", {}), result.get("records", [])
    systems = [s for s in ("ours", "baseline") if s in metrics]
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>Knowledge assistant evaluation</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Knowledge assistant evaluation</h1>", _config_html(cfg),
             "<h2>Headline metrics</h2>", _headline_table(metrics, systems),
             '<div class="charts">', bars_svg(_bar_data(metrics, systems))]
    if metrics["ours"].get("confusion"):
        parts.append(confusion_svg(metrics["ours"]["confusion"]))
    parts.append("</div>")
    parts += ["<h2>Latency</h2>", '<div class="charts">', latency_svg(_latency_series(records, systems)),
              _latency_table(metrics, systems), "</div>",
              "<h2>Per question</h2>",
              '<p class="muted">✓ correct, ✗ wrong, · nothing expected. Numbers in answers: '
              '<span class="sup">supported</span> / <span class="unsup">found nowhere in the knowledge base</span>. '
              "Rows with a wrong answer from our assistant are shaded.</p>",
              _questions_table(records, systems), "</body></html>"]
    return "\n".join(parts)


def write_report(result: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
    return path


def _config_html(cfg: dict[str, Any]) -> str:
    items = [("questions", cfg.get("questions")), ("file", cfg.get("questions_file")),
             ("generator", cfg.get("generator")), ("embedder", cfg.get("embedder")),
             ("index", cfg.get("index_version")), ("chunks", cfg.get("chunks")),
             ("router", cfg.get("router")), ("top_k", cfg.get("top_k")),
             ("run time", f"{cfg.get('seconds')} s" if cfg.get("seconds") is not None else None)]
    base = cfg.get("baseline")
    if base:
        items.append(("baseline", f"{base.get('name')}: dense top-{base.get('k')} → plain prompt → "
                                  f"raw {base.get('generator')} text (no terms, routing, verifier or refusal rule)"))
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_plain(v))}</td></tr>" for k, v in items if v is not None)
    return f'<table class="muted">{cells}</table>'


def _plain(value: Any) -> str:
    """Settings dicts as ``key=value`` lists.

    >>> _plain({"fact_threshold": 0.86, "backend": "signals"})
    'fact_threshold=0.86, backend=signals'
    """
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _headline_table(metrics: dict[str, Any], systems: list[str]) -> str:
    head = "<tr><th>metric</th>" + "".join(f"<th>{escape(s)}</th>" for s in systems) + "<th>meaning</th></tr>"
    rows = []
    for label, key, meaning in HEADLINE:
        cells = "".join(f'<td class="num">{_fmt(_get(metrics[s], key))}</td>' for s in systems)
        rows.append(f"<tr><td>{escape(label)}</td>{cells}<td class=\"muted\">{escape(meaning)}</td></tr>")
    counts = "".join(
        f'<td class="num">{metrics[s]["n"]} q · {metrics[s]["numbers_checked"]} numbers · '
        f'{metrics[s]["errors"]} errors</td>' for s in systems)
    rows.append(f"<tr><td>counts</td>{counts}<td class=\"muted\">questions, numbers checked, failed calls</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _bar_data(metrics: dict[str, Any], systems: list[str]) -> dict[str, dict[str, float | None]]:
    return {label: {s: _get(metrics[s], key) for s in systems} for label, key, _ in HEADLINE}


def _latency_series(records: list[dict[str, Any]], systems: list[str]) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    for route in ROUTES:
        vals = [r["ours"]["latency_ms"] for r in records
                if r.get("ours", {}).get("route") == route and r["ours"].get("latency_ms") is not None]
        if vals:
            series[f"ours · {route}"] = vals
    if "baseline" in systems:
        vals = [r["baseline"]["latency_ms"] for r in records if r.get("baseline", {}).get("latency_ms") is not None]
        series["baseline · all"] = vals
    return series


def _latency_table(metrics: dict[str, Any], systems: list[str]) -> str:
    rows = ["<tr><th>system</th><th>route</th><th>n</th><th>p50 ms</th><th>p95 ms</th><th>max ms</th></tr>"]
    for s in systems:
        for route, lat in metrics[s]["latency_ms"]["by_route"].items():
            rows.append(f"<tr><td>{escape(s)}</td><td>{escape(route)}</td><td class=\"num\">{lat['n']}</td>"
                        f"<td class=\"num\">{_ms(lat['p50'])}</td><td class=\"num\">{_ms(lat['p95'])}</td>"
                        f"<td class=\"num\">{_ms(lat['max'])}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _expected_html(rec: dict[str, Any]) -> str:
    if rec.get("refuse"):
        return "<em>refuse</em>"
    groups = rec.get("expected") or []
    return " <b>+</b> ".join(" / ".join(escape(a) for a in g) for g in groups) or '<span class="na">–</span>'


def _numbers_html(numbers: list[dict[str, Any]]) -> str:
    return " ".join(f'<span class="{"sup" if n["supported"] else "unsup"}" title="{escape(str(n.get("where")))}">'
                    f"{escape(str(n['text']))}</span>" for n in numbers)


def _citations_html(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return '<span class="na">none</span>'
    items = []
    for i, c in enumerate(citations, 1):
        page = f" p.{c['page']}" if c.get("page") else ""
        items.append(f"<li><b>{escape(str(c.get('source', '')))}{escape(page)}</b> "
                     f"<span class=\"muted\">{escape(str(c.get('chunk_id', '')))}</span><br>"
                     f"{escape(str(c.get('quote', ''))[:400])}</li>")
    return f"<details><summary>{len(citations)} citation(s)</summary><ol>{''.join(items)}</ol></details>"


def _system_cell(out: dict[str, Any], ours: bool) -> str:
    answer = escape(out.get("answer") or "")
    err = f'<div class="bad">{escape(out["error"])}</div>' if out.get("error") else ""
    lines = [f"{_mark(out.get('correct'))} {answer}{err}"]
    if ours:
        v = out.get("verification") or {}
        note = f" — {escape(v['note'])}" if v.get("note") else ""
        lines.append(f'<div class="muted">route <b>{escape(str(out.get("route")))}</b> '
                     f'({_fmt(out.get("confidence"), 2)}) · verification {escape(str(v.get("status")))}{note}</div>')
        if out.get("rewritten_query"):
            lines.append(f'<div class="muted">rewritten: {escape(out["rewritten_query"])}</div>')
    if out.get("numbers"):
        lines.append(f'<div class="muted">numbers: {_numbers_html(out["numbers"])}</div>')
    lines.append(f'<div class="muted">citation holds fact: {_mark(out.get("citation_correct"))} · '
                 f'{_ms(out.get("latency_ms"))} ms</div>')
    lines.append(_citations_html(out.get("citations") or []))
    return "".join(lines)


def _questions_table(records: list[dict[str, Any]], systems: list[str]) -> str:
    head = ("<tr><th>id</th><th>question</th><th>expected</th><th>ours</th>"
            + ("<th>baseline</th>" if "baseline" in systems else "") + "</tr>")
    rows = []
    for rec in records:
        ours = rec.get("ours", {})
        cls = ' class="q wrong"' if ours.get("correct") is False else ' class="q"'
        route = f'<div class="muted">route: {escape(str(rec.get("route") or "–"))}</div>'
        cells = [f"<td>{escape(str(rec['id']))}</td>", f"<td>{escape(rec['question'])}</td>",
                 f"<td>{_expected_html(rec)}{route}</td>", f"<td>{_system_cell(ours, True)}</td>"]
        if "baseline" in systems:
            cells.append(f"<td>{_system_cell(rec.get('baseline', {}), False)}</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"
