"""The self-contained HTML audit report: one file, inline CSS and SVG, no network, no JavaScript.

Input is the stable result document (see :mod:`auditor.pipeline.result`) plus the optional plot arrays
(:class:`~auditor.pipeline.report_data.ReportData`) and an optional lineage trend. Every section is built
from what is present: a document with a metric subset, no verdict, or an empty ``ReportData`` renders
the sections it can and omits the rest. All document text is HTML-escaped: dataset references are
user input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from auditor import __version__
from auditor.gates.output import rule_message, rule_name
from auditor.metrics import METRICS, MIN_MODE_SHARE
from auditor.pipeline.report_data import (
    PROJECTION_NEIGHBOURS,
    PROJECTION_TSNE_MIN_POINTS,
    ReportData,
)
from auditor.report import plots

FAMILIES = ("fidelity", "diversity", "collapse", "memorization")
TREND_METRICS = (
    "fid",
    "precision",
    "recall",
    "coverage",
    "vendi_ratio",
    "tail_recall",
    "mode_coverage",
    "effective_rank_ratio",
    "memorization_rate",
)
_OUTCOME_RANK = {"pass": 0, "warn": 1, "fail": 2}
# The Content-Security-Policy makes the no-network promise enforceable by the browser: even if some
# markup slipped through escaping, nothing could be fetched or executed.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# --- formatting ----------------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def as_float(value: object) -> float | None:
    """A finite float, or None for anything missing, non-numeric or NaN (rendered as "n/a")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_number(value: object, digits: int = 4) -> str:
    """``digits`` significant figures; scientific below 1e-3 (kid) and from 1e6; "n/a" when absent."""
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    v = as_float(value)
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    exponent = math.floor(math.log10(abs(v)))
    if exponent < -3 or exponent >= 6:
        mantissa, _, power = f"{v:.{digits - 1}e}".partition("e")
        return f"{mantissa}e{int(power)}"
    decimals = max(0, digits - 1 - exponent)
    # ASCII minus throughout: numbers copied out of the report must paste into code and spreadsheets.
    return f"{v:,.{decimals}f}"


def fmt_interval(low: object, high: object) -> str:
    lo, hi = as_float(low), as_float(high)
    if lo is None or hi is None:
        return "n/a"
    return f"[{fmt_number(lo)}, {fmt_number(hi)}]"


def fmt_count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "n/a"


def _fmt_timestamp(value: object) -> str:
    if not isinstance(value, str):
        return "n/a"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return value
    offset = stamp.utcoffset()
    suffix = " UTC" if offset is not None and offset.total_seconds() == 0 else ""
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + suffix


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _tag(name: str, body: str, cls: str = "", **attrs: str) -> str:
    attributes = "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    class_attr = f' class="{_e(cls)}"' if cls else ""
    return f"<{name}{class_attr}{attributes}>{body}</{name}>"


def _table(head: Sequence[tuple[str, str]], rows: Iterable[str], cls: str = "") -> str:
    """``head`` is (label, css class) per column; ``rows`` are ready ``<tr>`` strings."""
    # <wbr> after underscores lets long metric names wrap instead of widening the table.
    header = "".join(_tag("th", _e(label).replace("_", "_<wbr>"), css) for label, css in head)
    return (
        f'<div class="table-wrap"><table class="{_e(cls)}"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _badge(outcome: str) -> str:
    known = outcome if outcome in {"pass", "warn", "fail", "waived"} else "none"
    return f'<span class="badge badge-{known}">{_e(outcome)}</span>'


def _section(section_id: str, heading: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{section_id}"><h2>{_e(heading)}</h2>{note_html}{body}</section>'


# --- header --------------------------------------------------------------------------------------


def _dataset_rows(document: Mapping[str, Any]) -> list[str]:
    rows = []
    for role in ("real", "synthetic", "holdout"):
        ds = document.get(role)
        if not isinstance(ds, Mapping):
            continue
        rows.append(
            "<tr>"
            + _tag("td", _e(role))
            + _tag("td", _e(ds.get("reference", "")), "ref")
            + _tag("td", fmt_count(ds.get("n")), "num")
            + _tag("td", fmt_count(ds.get("dim")), "num")
            + _tag("td", _e(ds.get("format") or "n/a"))
            + _tag("td", _e(ds.get("fingerprint") or "n/a"), "mono")
            + "</tr>"
        )
    return rows


def _extractor_text(extractor: Mapping[str, Any]) -> str:
    if not extractor:
        return "n/a"
    version = str(extractor.get("version", "?"))
    text = f"{extractor.get('name', '?')} {'v' if version[:1].isdigit() else ''}{version}"
    if isinstance(extractor.get("dim"), int):
        text += f" · {extractor['dim']}-d"
    return text


def _lineage_html(lineage: Mapping[str, Any]) -> str:
    parent, generation = lineage.get("parent_audit_id"), lineage.get("generation")
    if parent is None and generation is None:
        return "none (root audit)"
    text = _e(f"generation {generation}") if generation is not None else "no generation"
    if parent:
        # A short id keeps the header grid tidy; the full id is in the tooltip.
        short = _tag("span", _e(str(parent)[:8]) + "…", "mono", title=str(parent))
        return f"{text} · parent {short}"
    return f"{text} · no parent"


def _header(document: Mapping[str, Any], title: str) -> str:
    extractor = _mapping(document.get("extractor"))
    sizes = " / ".join(
        fmt_count(_mapping(document.get(r)).get("n")) for r in ("real", "synthetic", "holdout")
    )
    meta = [
        ("Project", _e(document.get("project", "n/a"))),
        ("Audit ID", f'<span class="mono">{_e(document.get("audit_id", "n/a"))}</span>'),
        ("Created", _e(_fmt_timestamp(document.get("created_at")))),
        ("Extractor", _e(_extractor_text(extractor))),
        ("N real / synthetic / holdout", _e(sizes)),
        ("Device", _e(document.get("device", "n/a"))),
        (
            "Protocol fingerprint",
            f'<span class="mono">{_e(_mapping(document.get("protocol")).get("fingerprint", "n/a"))}</span>',
        ),
        ("Lineage", _lineage_html(_mapping(document.get("lineage")))),
    ]
    if extractor.get("weights_sha256"):
        meta.insert(
            4, ("Weights SHA-256", f'<span class="mono">{_e(str(extractor["weights_sha256"])[:16])}…</span>')
        )
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in meta)
    datasets = _dataset_rows(document)
    table = (
        _table(
            [
                ("Role", ""),
                ("Reference", ""),
                ("N", "num"),
                ("Dim", "num"),
                ("Format", ""),
                ("Fingerprint", ""),
            ],
            datasets,
            "datasets",
        )
        if datasets
        else ""
    )
    return (
        f'<header id="header"><p class="kicker">Synthetic data audit</p><h1>{_e(title)}</h1>'
        f'<dl class="meta">{items}</dl>{table}</header>'
    )


# --- verdict -------------------------------------------------------------------------------------


def _rule_row(rule: Mapping[str, Any]) -> str:
    bound = rule.get("bound")
    symbol = {"min": "≥", "max": "≤"}.get(str(bound), "?")
    outcome = str(rule.get("outcome", ""))
    return (
        f'<tr class="rule-{_e(outcome)}">'
        + _tag("td", f"<code>{_e(rule.get('metric', '?'))}</code>")
        + _tag("td", _e(rule.get("on", "value")))
        + (
            _tag("td", _e(rule_name(rule)), "num")
            if isinstance(rule.get("baseline"), Mapping)
            else _tag("td", f"{_e(bound)} {symbol} {fmt_number(rule.get('threshold'))}", "num")
        )
        + _tag("td", fmt_number(rule.get("observed")), "num")
        + _tag("td", _e(rule.get("tier", "")))
        + _tag("td", _badge(outcome))
        + _tag("td", _e(rule_message(rule)), "msg")
        + "</tr>"
    )


def _verdict_section(verdict: Mapping[str, Any]) -> str:
    passed = verdict.get("passed")
    rules = [r for r in verdict.get("rules") or [] if isinstance(r, Mapping)]
    counts = {k: sum(1 for r in rules if r.get("outcome") == k) for k in ("fail", "warn", "waived", "pass")}
    if passed is True:
        state, text = "passed", "PASSED"
    elif passed is False:
        state, text = "failed", "FAILED"
    else:
        state, text = "none", "NO POLICY"
    if rules:
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) + f" of {len(rules)} rules"
    else:
        summary = "No gate policy was applied; the metrics below are informational."
    banner = (
        f'<div class="verdict verdict-{state}" role="status"><span class="verdict-text">{text}</span>'
        f'<span class="verdict-summary">{_e(summary)}</span></div>'
    )
    table = ""
    if rules:
        head = [("Metric", ""), ("On", ""), ("Threshold", "num"), ("Observed", "num"), ("Tier", "")]
        table = _table([*head, ("Outcome", ""), ("Message", "")], (_rule_row(r) for r in rules), "rules")
    notes = "".join(
        f'<p class="noise-floor" role="note"><strong>Noise floor:</strong> {_e(note)}</p>'
        for note in verdict.get("noise_floor") or []
    )
    return f'<section id="verdict"><h2>Verdict</h2>{banner}{notes}{table}</section>'


# --- metrics -------------------------------------------------------------------------------------


def _worst_outcomes(verdict: Mapping[str, Any]) -> dict[str, str]:
    """The worst rule outcome per metric, to flag the metric's row."""
    worst: dict[str, str] = {}
    for rule in verdict.get("rules") or []:
        if not isinstance(rule, Mapping):
            continue
        name, outcome = str(rule.get("metric")), str(rule.get("outcome"))
        if _OUTCOME_RANK.get(outcome, -1) > _OUTCOME_RANK.get(worst.get(name, ""), -1):
            worst[name] = outcome
    return worst


def _direction(name: str) -> str:
    spec = METRICS.get(name)
    if spec is None:
        return '<span class="muted">?</span>'
    ideal = f"; ideal {fmt_number(spec.ideal)}" if spec.ideal is not None else ""
    if spec.higher_is_better:
        return f'<span class="dir" title="higher is better{ideal}">↑ higher</span>'
    return f'<span class="dir" title="lower is better{ideal}">↓ lower</span>'


def _extras(entry: Mapping[str, Any]) -> str:
    """Metric-specific extra fields (e.g. kid ``std``), shown after the description."""
    extra = {k: v for k, v in entry.items() if k not in {"value", "ci_low", "ci_high", "baseline"}}
    if not extra:
        return ""
    text = ", ".join(f"{k} {fmt_number(v) if as_float(v) is not None else v}" for k, v in extra.items())
    return f' <span class="muted">({_e(text)})</span>'


def _metric_row(name: str, entry: Mapping[str, Any], with_baseline: bool, outcome: str | None) -> str:
    spec = METRICS.get(name)
    flag = f" {_badge(outcome)}" if outcome in {"warn", "fail"} else ""
    cells = [
        _tag("td", f"<code>{_e(name)}</code>{flag}", "metric"),
        _tag("td", fmt_number(entry.get("value")), "num value"),
        _tag("td", fmt_interval(entry.get("ci_low"), entry.get("ci_high")), "num"),
    ]
    if with_baseline:
        cells.append(_tag("td", fmt_number(entry.get("baseline")), "num"))
    cells.append(_tag("td", _direction(name)))
    cells.append(_tag("td", _e(spec.summary if spec else "") + _extras(entry), "desc"))
    return "<tr>" + "".join(cells) + "</tr>"


def _group_by_family(metrics: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for name in metrics:
        spec = METRICS.get(name)
        groups.setdefault(spec.family if spec else "other", []).append(name)
    order = [*FAMILIES, *sorted(set(groups) - set(FAMILIES))]
    return [(family, groups[family]) for family in order if family in groups]


def _metrics_section(document: Mapping[str, Any]) -> str:
    metrics = {k: v for k, v in _mapping(document.get("metrics")).items() if isinstance(v, Mapping)}
    if not metrics:
        return ""
    confidence = as_float(_mapping(document.get("params")).get("confidence")) or 0.95
    with_baseline = any(as_float(m.get("baseline")) is not None for m in metrics.values())
    worst = _worst_outcomes(_mapping(document.get("verdict")))
    head = [("Metric", ""), ("Value", "num"), (f"{confidence * 100:g}% interval", "num")]
    if with_baseline:
        head.append(("Holdout baseline", "num"))
    head += [("Better", ""), ("What it measures", "")]
    rows = []
    for family, names in _group_by_family(metrics):
        rows.append(f'<tr class="family"><th colspan="{len(head)}">{_e(family.capitalize())}</th></tr>')
        rows.extend(_metric_row(n, metrics[n], with_baseline, worst.get(n)) for n in names)
    note = (
        "Holdout baseline: the same metric for the real holdout against the real set, i.e. the "
        "real-vs-real noise floor a perfect generator would score."
        if with_baseline
        else ""
    )
    return _section("metrics", "Metrics", _table(head, rows, "metrics"), note)


def _warnings_section(document: Mapping[str, Any]) -> str:
    items = [w for w in document.get("warnings") or [] if isinstance(w, Mapping)]
    if not items:
        return ""
    lis = "".join(
        f'<li><span class="warn-cat">{_e(w.get("category", "Warning"))}</span>{_e(w.get("message", ""))}</li>'
        for w in items
    )
    return _section("warnings", "Warnings", f'<ul class="warnings">{lis}</ul>')


# --- plots ---------------------------------------------------------------------------------------


def _figure(figure_id: str, heading: str, svg: str, caption: str) -> str:
    return (
        f'<figure id="{figure_id}" class="card"><h3>{_e(heading)}</h3>{svg}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _projection_figure(report: ReportData) -> str:
    real, synth = report.projection_real, report.projection_synthetic
    if not real and not synth:
        return ""
    marks = report.projection_marks
    modes = bool(report.projection_real_mode or report.projection_synthetic_mode)
    n_real, n_synth = len(real), len(synth)
    sides = [
        plots.MapSide(
            "real",
            f"real ({n_real:,})",
            real,
            plots.REAL_COLOR,
            marker="dot",
            indices=report.projection_real_index,
            keys=report.projection_real_key,
            groups=report.projection_real_mode,
            flagged=marks.get("uncovered", ()),
            flag_marker="ring",
            flag_label="real, not covered",
        ),
        plots.MapSide(
            "synthetic",
            f"synthetic ({n_synth:,})",
            synth,
            plots.SYNTHETIC_COLOR,
            marker="square",
            indices=report.projection_synthetic_index,
            keys=report.projection_synthetic_key,
            groups=report.projection_synthetic_mode,
            flagged=marks.get("off_manifold", ()),
            flag_marker="cross",
            flag_label="synthetic, off-manifold",
            dashed=True,
        ),
    ]
    method = report.projection_method or "pca"
    name = {"tsne": "t-SNE", "pca": "PCA"}.get(method, method)
    axis = "PC" if method == "pca" else name
    svg = plots.map_plot(
        sides,
        highlighted=[(1, pos) for pos in marks.get("copy", ())],
        highlight_label="copy of a real sample",
        group_label="colour: mode" if modes else "",
        title=f"Latent map ({name}) of real and synthetic features",
        x_label=f"{axis} 1",
        y_label=f"{axis} 2",
        height=460,
    )
    if method == "tsne":
        how = (
            f"t-SNE of {n_real:,} real and {n_synth:,} synthetic samples (uniform subsamples, fitted "
            "together): nearby points are similar samples; distances between clusters mean little."
        )
    elif report.projection_method:
        how = (
            f"{n_real:,} real and {n_synth:,} synthetic samples (uniform subsamples) projected on the "
            "first two principal axes of the real ones (t-SNE, which keeps neighbourhoods, needs "
            f"{PROJECTION_TSNE_MIN_POINTS} real samples or more, of more than two dimensions)."
        )
    else:  # stored before the map was recorded with its method: the PCA scatter of the time
        how = "Both sides projected on the first two principal axes of the real features (subsampled)."
    masses = " and ".join(f"{mass:.0%}" for mass in plots.DENSITY_MASSES)
    parts = [how, f"Contours: the densest {masses} of each side."]
    if marks:
        parts.append(
            "Rings: real samples no synthetic one covers; crosses: synthetic samples outside every real "
            "k-NN ball; red rings: near-copies of a real sample."
        )
    if modes:
        parts.append("Colour: the sample's mode (k-means on the real features).")
    share = report.projection_neighbour_share
    if share is not None and math.isfinite(share) and n_real + n_synth > 1:
        chance = n_real / (n_real + n_synth - 1)
        parts.append(
            f"A synthetic point's {PROJECTION_NEIGHBOURS} nearest map neighbours are {share:.0%} real on "
            f"average ({chance:.0%} if the sides mixed): less, and synthetic samples keep to regions of "
            "their own."
        )
    return _figure("projection", f"Latent map ({name})", svg, _e(" ".join(parts)))


def _mode_label(entry: Mapping[str, Any], previews: Previews | None, mode: int) -> str:
    """What a mode's bar is called: its majority label, else the start of its typical text, else its id."""
    if entry.get("label") is not None:
        return str(entry["label"])
    preview = _preview_of(_mapping(entry.get("medoid")), previews)
    if preview is not None and preview.get("kind") == "text":
        text = " ".join(str(preview.get("text") or "").split())
        return text[:11] + "…" if len(text) > 12 else text
    return f"#{mode}"


def _mode_strip(
    order: Sequence[int],
    entries: Mapping[int, Mapping[str, Any]],
    report: ReportData,
    previews: Previews | None,
) -> str:
    """The modes in bar order, each by its typical real sample: what the bars are."""
    cards = []
    for i in order:
        entry = _mapping(entries.get(i))
        medoid = entry.get("medoid")
        preview = _preview_of(medoid, previews) if isinstance(medoid, Mapping) else None
        body = _preview_body(preview, f"mode {i}")
        if not body:  # embeddings: a key says nothing about what the mode is
            continue
        share = f"real {_pct(report.mode_real_share[i])} · synthetic {_pct(report.mode_synthetic_share[i])}"
        name = f"#{i}" + (f" “{entry['label']}”" if entry.get("label") is not None else "")
        cards.append(
            f'<li class="mode-card" data-mode="{i}">{body}'
            f'<span class="mode-name">{_e(name)}</span><span class="muted">{_e(share)}</span></li>'
        )
    if not cards:
        return ""
    return f'<ol class="mode-strip" aria-label="each mode by its typical real sample">{"".join(cards)}</ol>'


def _modes_figure(report: ReportData, previews: Previews | None = None) -> str:
    real, synth = report.mode_real_share, report.mode_synthetic_share
    n = min(len(real), len(synth))
    if n == 0:
        return ""
    # Sorted by real share so the chart reads from dominant to rare modes; ids stay in the tooltips.
    order = sorted(range(n), key=lambda i: -real[i])
    starved = [rank for rank, i in enumerate(order) if real[i] > 0 and synth[i] < MIN_MODE_SHARE * real[i]]
    entries = {
        int(e["mode"]): e
        for e in _mapping(report.galleries).get("modes") or []
        if isinstance(e, Mapping) and isinstance(e.get("mode"), int)
    }
    names = [_mode_label(_mapping(entries.get(i)), previews, i) for i in order]
    labelled = any(name != f"#{i}" for name, i in zip(names, order, strict=True))
    svg = plots.grouped_bar_chart(
        names,
        [
            plots.BarGroup("real share", [real[i] for i in order], plots.REAL_COLOR),
            plots.BarGroup("synthetic share", [synth[i] for i in order], plots.SYNTHETIC_COLOR),
        ],
        highlight=starved,
        highlight_label=f"synthetic < {MIN_MODE_SHARE:.0%} of real",
        title="Share of samples per mode, real vs synthetic",
        x_label=(
            "mode (k-means on real features) by its majority label or typical sample, by real share"
            if labelled
            else "mode (k-means on real features), by real share"
        ),
        y_label="share of samples",
        y_tick_format=plots.percent_tick,
        value_format=lambda v: f"{v * 100:.2f}%",
        width=960,
        height=300,
    )
    caption = (
        f"{len(starved)} of {n} modes receive less than {MIN_MODE_SHARE:.0%} of their real share in the "
        "synthetic set (highlighted): these are the collapsed modes."
    )
    strip = _mode_strip(order, entries, report, previews)
    return _figure("modes", "Per-mode coverage", svg + strip, _e(caption))


def _spectrum_figure(report: ReportData) -> str:
    sides = (
        ("real", report.spectrum_real, plots.REAL_COLOR),
        ("synthetic", report.spectrum_synthetic, plots.SYNTHETIC_COLOR),
    )
    series = [plots.LineSeries(label, list(range(1, len(s) + 1)), s, color) for label, s, color in sides if s]
    if not series:
        return ""
    svg = plots.line_chart(
        series,
        log_y=True,
        title="Normalized covariance eigenvalues, real vs synthetic",
        x_label="eigenvalue rank",
        y_label="share of variance",
        integer_x=True,
        # Same size as the projection beside it, so the two cards line up.
        width=560,
        height=420,
    )
    caption = (
        "Eigenvalues of each side's feature covariance, normalized to sum to one (log scale; the top "
        f"{max(len(s.ys) for s in series)} shown). A synthetic spectrum that falls off faster concentrates "
        "variance in fewer directions: dimensional collapse."
    )
    return _figure("spectrum", "Covariance spectrum", svg, _e(caption))


def _plots_section(report: ReportData | None, previews: Previews | None = None) -> str:
    if report is None:
        return ""
    figures = [_projection_figure(report), _spectrum_figure(report)]
    wide = _modes_figure(report, previews)
    if not any(figures) and not wide:
        return ""
    grid = f'<div class="grid-2">{"".join(f for f in figures if f)}</div>' if any(figures) else ""
    return f'<section id="plots"><h2>Distributions</h2>{grid}{wide}</section>'


# --- galleries: the samples behind the numbers ---------------------------------------------------

# side -> row index (a string: the previews are stored as JSON) -> preview (auditor.pipeline.previews).
Previews = Mapping[str, Mapping[str, Mapping[str, Any]]]
_IMAGE_TYPES = frozenset({"image/webp", "image/png", "image/jpeg"})
# Stored previews go into an attribute: only plain base64 is ever written there.
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_SIDES = frozenset({"real", "synthetic", "holdout"})


def _pct(value: object) -> str:
    v = as_float(value)
    return "n/a" if v is None else f"{v * 100:.1f}%"


def _preview_of(ref: Mapping[str, Any], previews: Previews | None) -> Mapping[str, Any] | None:
    if not previews:
        return None
    found = _mapping(previews.get(str(ref.get("side")))).get(str(ref.get("index")))
    return found if isinstance(found, Mapping) else None


def _preview_body(preview: Mapping[str, Any] | None, alt: str) -> str:
    kind = preview.get("kind") if preview is not None else None
    if preview is not None and kind == "image":
        media, data = str(preview.get("media_type")), str(preview.get("data") or "")
        if media in _IMAGE_TYPES and _BASE64.match(data):
            width, height = preview.get("width"), preview.get("height")
            size = (
                f' width="{width}" height="{height}"'
                if isinstance(width, int) and isinstance(height, int)
                else ""
            )
            return f'<img class="thumb" src="data:{media};base64,{data}"{size} alt="{_e(alt)}">'
    if preview is not None and kind == "text":
        return f'<blockquote class="preview-text">{_e(preview.get("text"))}</blockquote>'
    if preview is not None and kind == "row":
        cells = [c for c in preview.get("cells") or [] if isinstance(c, (list, tuple)) and len(c) == 2]
        items = "".join(f"<div><dt>{_e(column)}</dt><dd>{_e(value)}</dd></div>" for column, value in cells)
        more = preview.get("more_columns")
        extra = f'<p class="muted">+{more} more columns</p>' if isinstance(more, int) and more > 0 else ""
        return f'<dl class="preview-row">{items}</dl>{extra}'
    return ""  # embeddings (or no preview): the key is all there is


def _sample(ref: Mapping[str, Any], previews: Previews | None, stat: str = "", role: str = "") -> str:
    side = str(ref.get("side"))
    side = side if side in _SIDES else "other"
    key = ref.get("key")
    name = str(key) if key is not None else f"row {ref.get('index')}"
    preview = _preview_of(ref, previews)
    label = preview.get("label") if preview is not None else None
    caption = (
        f'<span class="side side-{side}">{_e(role or side)}</span> '
        f'<span class="mono key" title="{_e(name)}">{_e(name)}</span>'
    )
    if label is not None:
        caption += f' <span class="label">{_e(label)}</span>'
    if stat:
        caption += f'<span class="stat">{stat}</span>'
    body = _preview_body(preview, f"{side} sample {name}")
    kind = str(preview.get("kind")) if preview is not None else "none"
    return (
        f'<figure class="sample sample-{_e(kind)}" data-side="{side}" data-index="{_e(ref.get("index"))}">'
        f"{body}<figcaption>{caption}</figcaption></figure>"
    )


def _strip(refs: Iterable[Mapping[str, Any]], previews: Previews | None, role: str = "") -> str:
    return '<div class="strip">' + "".join(_sample(ref, previews, role=role) for ref in refs) + "</div>"


def _copies_gallery(galleries: Mapping[str, Any], previews: Previews | None) -> str:
    pairs = [p for p in galleries.get("copies") or [] if isinstance(p, Mapping)]
    if not pairs:
        return ""
    tau = as_float(galleries.get("tau"))
    holdout = _mapping(galleries.get("holdout_nearest"))
    cards = []
    for pair in pairs:
        distance = as_float(pair.get("distance"))
        stats = [f"distance {fmt_number(distance)}"]
        if tau and distance is not None:
            stats[0] += f" ({fmt_number(distance / tau, 3)} τ)"
        if pair.get("memorized"):
            stats.append('<span class="badge badge-fail">near-copy</span>')
        closer = as_float(pair.get("holdout_closer"))
        if closer is not None:
            stats.append(f"{_pct(closer)} of holdout samples come closer")
        cards.append(
            '<div class="pair">'
            + _sample(_mapping(pair.get("synthetic")), previews)
            + _sample(_mapping(pair.get("real")), previews, role="nearest real")
            + f'<p class="pair-stats">{" · ".join(stats)}</p></div>'
        )
    note = "The synthetic samples nearest to a real sample, each beside that real sample. "
    if tau is not None:
        note += (
            f"τ = {fmt_number(tau)} (the 1st percentile of real nearest-neighbour distances): within it a "
        )
        note += "sample counts as a near-copy"
        memorized = galleries.get("memorized")
        note += f" ({fmt_count(memorized)} synthetic samples are). " if isinstance(memorized, int) else ". "
    if holdout:
        note += (
            f"Fresh real data (the holdout, {fmt_count(holdout.get('n'))} samples) lies at a median "
            f"{fmt_number(holdout.get('median'))} from its nearest real sample (5th percentile "
            f"{fmt_number(holdout.get('p05'))}): copies much nearer than that were not generalised."
        )
    return (
        f'<div class="gallery" id="gallery-copies"><h3>Closest copies</h3><p class="note">{_e(note)}</p>'
        f'<div class="pairs">{"".join(cards)}</div></div>'
    )


def _outside_gallery(galleries: Mapping[str, Any], previews: Previews | None, n_synthetic: object) -> str:
    total = galleries.get("outside_total")
    if not isinstance(total, int):
        return ""
    items = [i for i in galleries.get("outside") or [] if isinstance(i, Mapping)]
    note = (
        f"{fmt_count(total)} of {fmt_count(n_synthetic)} synthetic samples lie in no real k-NN ball (what "
        "lowers precision)" + (", farthest from any real sample first." if items else ".")
    )
    figures = "".join(
        _sample(
            _mapping(item.get("synthetic")), previews, stat=f"distance {fmt_number(item.get('distance'))}"
        )
        for item in items
    )
    return (
        f'<div class="gallery" id="gallery-outside"><h3>Outside the real manifold</h3>'
        f'<p class="note">{_e(note)}</p><div class="strip">{figures}</div></div>'
    )


def _mode_name(mode: object, label: object, label_share: object) -> str:
    name = f"mode #{mode}" if isinstance(mode, int) else "all modes"
    if label is not None:
        name += f" · mostly “{label}”" + (
            f" ({_pct(label_share)})" if as_float(label_share) is not None else ""
        )
    return name


def _missing_gallery(galleries: Mapping[str, Any], previews: Previews | None) -> str:
    missing = _mapping(galleries.get("missing"))
    groups = [g for g in missing.get("groups") or [] if isinstance(g, Mapping)]
    total = missing.get("uncovered")
    if not groups and not isinstance(total, int):
        return ""
    labels = {e.get("mode"): e for e in galleries.get("modes") or [] if isinstance(e, Mapping)}
    blocks = []
    for group in groups:
        mode = group.get("mode")
        entry = _mapping(labels.get(mode))
        facts = []
        if as_float(group.get("real_share")) is not None:
            facts.append(
                f"real {_pct(group.get('real_share'))}, synthetic {_pct(group.get('synthetic_share'))}"
            )
        if isinstance(group.get("uncovered"), int):
            size = group.get("size")
            facts.append(
                f"{fmt_count(group['uncovered'])}"
                + (f" of {fmt_count(size)}" if isinstance(size, int) else "")
                + " uncovered"
            )
        heading = _e(_mode_name(mode, entry.get("label"), entry.get("label_share")))
        medoids, uncovered = group.get("medoids") or [], group.get("samples") or []
        body = ""
        if medoids:
            body += f'<div class="row-label">typical</div>{_strip(medoids, previews, role="typical")}'
        if uncovered:
            body += f'<div class="row-label">uncovered</div>{_strip(uncovered, previews, role="uncovered")}'
        blocks.append(
            f'<div class="mode-group" data-mode="{_e(mode)}"><h4>{heading}</h4>'
            f'<p class="muted">{_e("; ".join(facts))}</p>{body}</div>'
        )
    note = (
        f"{fmt_count(total)} real samples have no synthetic sample in their k-NN ball (what lowers coverage)"
        if isinstance(total, int)
        else "The modes the synthetic data under-fills"
    )
    if groups and groups[0].get("mode") is not None:
        note += (
            "; by mode, the modes that lost the most mass first, each shown by typical real samples "
            "(nearest its centroid) and by its uncovered ones, most missed first."
        )
    else:
        note += "."
    return (
        f'<div class="gallery" id="gallery-missing"><h3>Missing in the synthetic data</h3>'
        f'<p class="note">{_e(note)}</p>{"".join(blocks)}</div>'
    )


def _duplicates_gallery(galleries: Mapping[str, Any], previews: Previews | None) -> str:
    duplicates = _mapping(galleries.get("duplicates"))
    total = duplicates.get("total")
    if not isinstance(total, int):
        return ""
    groups = [g for g in duplicates.get("groups") or [] if isinstance(g, Mapping)]
    blocks = "".join(
        f'<div class="dup-group"><p class="muted">{fmt_count(g.get("size"))} samples, nearest pair at '
        f"{fmt_number(g.get('distance'))}</p>{_strip(g.get('members') or [], previews)}</div>"
        for g in groups
    )
    note = f"{fmt_count(total)} synthetic samples have another within τ (what raises duplicate_rate)"
    note += ", in groups of near-identical samples, largest first." if groups else "."
    return (
        f'<div class="gallery" id="gallery-duplicates"><h3>Synthetic duplicates</h3>'
        f'<p class="note">{_e(note)}</p>{blocks}</div>'
    )


def _previews_note(document: Mapping[str, Any], previews: Previews | None, override: str | None) -> str:
    if override:
        return f"Previews are {override}: samples are shown by key."
    if not previews:
        info = _mapping(_mapping(document.get("diagnostics")).get("previews"))
        why = info.get("omitted") or "none stored with this audit"
        return f"No previews: {why}; samples are shown by key."
    return "Previews show real data: this report follows the audit's access rules."


def _galleries_section(
    document: Mapping[str, Any], report: ReportData | None, previews: Previews | None, note: str | None
) -> str:
    galleries = _mapping(report.galleries) if report is not None else {}
    if not galleries:
        return ""
    n_synthetic = _mapping(document.get("synthetic")).get("n")
    parts = [
        _copies_gallery(galleries, previews),
        _outside_gallery(galleries, previews, n_synthetic),
        _missing_gallery(galleries, previews),
        _duplicates_gallery(galleries, previews),
    ]
    if not any(parts):
        return ""
    body = "".join(p for p in parts if p)
    return _section(
        "galleries", "Samples behind the numbers", body, _e(_previews_note(document, previews, note))
    )


# --- tables: columns the synthetic data lost or invented ------------------------------------------


def _range_text(low: object, high: object) -> str:
    lo, hi = as_float(low), as_float(high)
    if lo is None and hi is None:
        return "every value"
    if lo is None:
        return f"< {fmt_number(hi)}"
    if hi is None:
        return f"≥ {fmt_number(lo)}"
    return f"[{fmt_number(lo)}, {fmt_number(hi)})"


def _columns_section(report: ReportData | None) -> str:
    drift = _mapping(report.table_drift) if report is not None else {}
    if not drift:
        return ""
    parts = []
    for key, what in (
        ("columns_lost", "Columns the synthetic table lacks"),
        ("columns_invented", "Columns only the synthetic table has"),
    ):
        names = [str(n) for n in drift.get(key) or []]
        if names:
            parts.append(
                f'<p class="column-list"><strong>{_e(what)}:</strong> '
                + ", ".join(f"<code>{_e(n)}</code>" for n in names)
                + "</p>"
            )
    categories = [c for c in drift.get("categories") or [] if isinstance(c, Mapping)]
    if categories:
        rows = (
            f'<tr class="finding-{_e(c.get("status"))}">'
            + _tag("td", f"<code>{_e(c.get('column'))}</code> = {_e(c.get('category'))}")
            + _tag("td", _pct(c.get("real_share")), "num")
            + _tag("td", _pct(c.get("synthetic_share")), "num")
            + _tag("td", _badge_for(str(c.get("status"))))
            + "</tr>"
            for c in categories
        )
        parts.append(
            "<h3>Categories</h3>"
            + _table([("Category", ""), ("Real", "num"), ("Synthetic", "num"), ("", "")], rows, "categories")
        )
    ranges = [r for r in drift.get("ranges") or [] if isinstance(r, Mapping)]
    if ranges:
        rows = (
            "<tr>"
            + _tag("td", f"<code>{_e(r.get('column'))}</code> {_e(_range_text(r.get('low'), r.get('high')))}")
            + _tag("td", _pct(r.get("real_share")), "num")
            + _tag("td", _pct(r.get("synthetic_share")), "num")
            + "</tr>"
            for r in ranges
        )
        parts.append(
            "<h3>Numeric ranges the synthetic data (almost) never reaches</h3>"
            + _table([("Range", ""), ("Real", "num"), ("Synthetic", "num")], rows, "ranges")
        )
    outside = [o for o in drift.get("outside") or [] if isinstance(o, Mapping)]
    if outside:
        rows = (
            "<tr>"
            + _tag("td", f"<code>{_e(o.get('column'))}</code>")
            + _tag("td", _pct(o.get("below")), "num")
            + _tag("td", _pct(o.get("above")), "num")
            + "</tr>"
            for o in outside
        )
        parts.append(
            "<h3>Synthetic values beyond every real value</h3>"
            + _table([("Column", ""), ("Below", "num"), ("Above", "num")], rows, "outside")
        )
    if not parts:
        parts.append("<p>No column lost or invented a category or a range of its values.</p>")
    note = (
        "From the raw tables: a category counts as lost when its synthetic share is below "
        f"{MIN_MODE_SHARE:.0%} of its real share (0: absent); ranges are real deciles, adjacent ones "
        f"merged. Only aggregates of the real data: categories held by at least "
        f"{fmt_count(drift.get('min_category_rows'))} real "
        "rows, range ends at real quantiles."
    )
    return _section("columns", "Columns", "".join(parts), _e(note))


def _badge_for(status: str) -> str:
    outcome = {"lost": "fail", "starved": "warn", "invented": "none"}.get(status, "none")
    return f'<span class="badge badge-{outcome}">{_e(status)}</span>'


# --- across generations --------------------------------------------------------------------------


def _trend_entries(trend: Sequence[Any]) -> list[Mapping[str, Any]]:
    entries = [e for e in trend if isinstance(e, Mapping)]
    if all(isinstance(e.get("generation"), int) for e in entries):
        entries.sort(key=lambda e: int(e["generation"]))
    return entries


def _trend_x(entries: Sequence[Mapping[str, Any]]) -> tuple[list[float], str]:
    """Generation numbers when every entry has one, else the position in the list."""
    if entries and all(isinstance(e.get("generation"), int) for e in entries):
        return [float(e["generation"]) for e in entries], "generation"
    return [float(i) for i in range(1, len(entries) + 1)], "audit #"


def _trend_metric(entry: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return _mapping(_mapping(entry.get("metrics")).get(name))


def _trend_value(entry: Mapping[str, Any], name: str, field: str = "value") -> float:
    value = as_float(_trend_metric(entry, name).get(field))
    return math.nan if value is None else value


def _trend_chart(name: str, entries: Sequence[Mapping[str, Any]], xs: list[float], x_label: str) -> str:
    series = plots.LineSeries(
        name,
        xs,
        [_trend_value(e, name) for e in entries],
        plots.TREND_COLOR,
        lows=[_trend_value(e, name, "ci_low") for e in entries],
        highs=[_trend_value(e, name, "ci_high") for e in entries],
        # Failed generations stand out on every chart, not only in the table.
        point_colors=[plots.HIGHLIGHT_COLOR if e.get("passed") is False else None for e in entries],
    )
    svg = plots.line_chart(
        [series],
        title=f"{name} across generations",
        x_label=x_label,
        width=340,
        height=210,
        integer_x=True,
        legend=False,
        markers=True,
    )
    return (
        f'<figure class="card trend-chart" data-metric="{_e(name)}"><h3><code>{_e(name)}</code> '
        f"{_direction(name)}</h3>{svg}</figure>"
    )


def _trend_verdict(passed: object) -> str:
    if passed is True:
        return _badge("pass")
    if passed is False:
        return _badge("fail")
    return '<span class="muted">n/a</span>'


def _trend_table(entries: Sequence[Mapping[str, Any]], names: Sequence[str], current: object) -> str:
    head = [("Gen", "num"), ("Audit", ""), ("Verdict", ""), *((n, "num") for n in names)]
    rows = []
    for entry in entries:
        audit_id = str(entry.get("audit_id", ""))
        cells = [
            _tag("td", _e(entry.get("generation", "n/a")), "num"),
            _tag("td", _tag("span", _e(audit_id[:8]), "mono", title=audit_id)),
            _tag("td", _trend_verdict(entry.get("passed"))),
        ]
        for name in names:
            metric = _trend_metric(entry, name)
            interval = fmt_interval(metric.get("ci_low"), metric.get("ci_high"))
            cells.append(_tag("td", fmt_number(metric.get("value")), "num", title=interval))
        cls = ' class="current"' if current is not None and audit_id == str(current) else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return _table(head, rows, "trend")


def _trend_section(trend: Sequence[Any] | None, current_audit: object) -> str:
    if not trend:
        return ""
    entries = _trend_entries(trend)
    names = [
        n
        for n in TREND_METRICS
        if any(as_float(_trend_metric(e, n).get("value")) is not None for e in entries)
    ]
    if not entries or not names:
        return ""
    xs, x_label = _trend_x(entries)
    charts = "".join(_trend_chart(n, entries, xs, x_label) for n in names)
    note = (
        f"{len(entries)} audits in this lineage; bands are the per-audit confidence intervals, red "
        "points are generations that failed their gate. The current audit's row is highlighted."
    )
    body = f'<div class="grid-3">{charts}</div>{_trend_table(entries, names, current_audit)}'
    return _section("trend", "Across generations", body, _e(note))


# --- run details & page --------------------------------------------------------------------------


def _kv_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return fmt_number(value)
    return "n/a" if value is None else str(value)


def _kv_table(heading: str, items: Mapping[str, Any], suffix: str = "") -> str:
    if not items:
        return ""
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(_kv_value(v))}{_e(suffix if as_float(v) is not None else '')}</td></tr>"
        for k, v in items.items()
    )
    return f'<div class="kv"><h3>{_e(heading)}</h3><table>{rows}</table></div>'


def _run_section(document: Mapping[str, Any]) -> str:
    tables = [
        _kv_table("Parameters", _mapping(document.get("params"))),
        _kv_table("Details", _mapping(document.get("details"))),
        _kv_table("Timings", _mapping(document.get("timings")), " s"),
    ]
    if not any(tables):
        return ""
    return _section("run", "Run details", f'<div class="grid-3">{"".join(tables)}</div>')


def _footer(document: Mapping[str, Any]) -> str:
    schema = document.get("schema_version", "?")
    return (
        f"<footer>Generated by auditor {_e(__version__)} · result schema v{_e(schema)} · "
        "a self-contained file: no scripts, no network resources.</footer>"
    )


def render_report(
    document: Mapping[str, Any],
    report: ReportData | None = None,
    *,
    trend: list[dict[str, Any]] | None = None,
    title: str | None = None,
    previews: Previews | None = None,
    previews_off: str | None = None,
) -> str:
    """Render one audit as a single self-contained HTML page (inline CSS + SVG, no network, no JS).

    ``previews``: the stored previews of the galleries' samples (:mod:`auditor.pipeline.previews`;
    thumbnails inline as ``data:`` URIs); ``previews_off``: why previews are withheld at render time
    (the operator's switch), said above the galleries, which then show keys only.
    """
    doc = _mapping(document)
    heading = title or f"{doc.get('project', 'audit')} · audit {str(doc.get('audit_id', ''))[:8]}"
    sections = [
        _header(doc, heading),
        _verdict_section(_mapping(doc.get("verdict"))),
        _metrics_section(doc),
        _warnings_section(doc),
        _plots_section(report, None if previews_off else previews),
        _galleries_section(doc, report, None if previews_off else previews, previews_off),
        _columns_section(report),
        _trend_section(trend, doc.get("audit_id")),
        _run_section(doc),
        _footer(doc),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(heading)}</title><style>{CSS}{GALLERY_CSS}</style></head>\n"
        f'<body><main class="container">\n{body}\n</main></body></html>\n'
    )


CSS = """
:root {
  --fg: #1f2937; --muted: #6b7280; --border: #e5e7eb; --bg: #f6f7f9; --card: #ffffff;
  --accent: #4f46e5; --pass: #15803d; --pass-bg: #dcfce7; --warn: #b45309; --warn-bg: #fef3c7;
  --fail: #b91c1c; --fail-bg: #fee2e2; --none: #475569; --none-bg: #e2e8f0;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg); line-height: 1.45; font-size: 14px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.container { max-width: 1120px; margin: 0 auto; padding: 28px 24px 40px; }
h1 { font-size: 24px; margin: 2px 0 16px; font-weight: 650; overflow-wrap: anywhere; }
h2 { font-size: 17px; margin: 0 0 12px; font-weight: 650; }
h3 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
section, header { background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  padding: 18px 20px; margin-bottom: 18px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.kicker { margin: 0; color: var(--muted); text-transform: uppercase; letter-spacing: .08em; font-size: 11px; }
.muted { color: var(--muted); }
.note { color: var(--muted); margin: -4px 0 12px; font-size: 13px; }
.meta { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px 20px; margin: 0 0 16px; }
.meta dt { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .04em; }
.meta dd { margin: 2px 0 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--border); text-align: left; vertical-align: top; }
thead th { color: var(--muted); font-weight: 600; font-size: 12px; border-bottom: 2px solid var(--border);
  white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.value { font-weight: 600; }
td.ref { overflow-wrap: anywhere; max-width: 420px; }
td.desc, td.msg { color: #374151; }
tr.family th { background: #f9fafb; color: var(--accent); text-transform: uppercase; font-size: 11.5px;
  letter-spacing: .06em; padding-top: 10px; }
.dir { white-space: nowrap; color: var(--muted); }
h3 .dir { font-size: 12px; font-weight: 500; margin-left: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .03em; }
.badge-pass { color: var(--pass); background: var(--pass-bg); }
.badge-warn { color: var(--warn); background: var(--warn-bg); }
.badge-fail { color: var(--fail); background: var(--fail-bg); }
.badge-none { color: var(--none); background: var(--none-bg); }
.badge-waived { color: #1d4ed8; background: #dbeafe; }
.verdict { display: flex; align-items: baseline; gap: 16px; padding: 14px 18px; border-radius: 8px;
  margin-bottom: 14px; border-left: 6px solid; }
.verdict-text { font-size: 22px; font-weight: 750; letter-spacing: .04em; }
.verdict-passed { background: var(--pass-bg); color: var(--pass); }
.verdict-failed { background: var(--fail-bg); color: var(--fail); }
.verdict-none { background: var(--none-bg); color: var(--none); }
.verdict-summary { color: var(--fg); }
p.noise-floor { padding: 8px 12px; background: var(--warn-bg); border-radius: 6px; margin: 8px 0; }
tr.rule-fail td:first-child { box-shadow: inset 3px 0 var(--fail); }
tr.rule-warn td:first-child { box-shadow: inset 3px 0 var(--warn); }
ul.warnings { margin: 0; padding-left: 0; list-style: none; }
ul.warnings li { padding: 8px 12px; background: var(--warn-bg); border-radius: 6px; margin-bottom: 6px; }
.warn-cat { font-weight: 600; color: var(--warn); margin-right: 6px; }
.grid-2 { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; margin-bottom: 16px; }
.grid-3 { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 14px; margin-bottom: 14px; }
figure.card { margin: 0; border: 1px solid var(--border); border-radius: 8px; padding: 12px 14px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
svg.plot { display: block; width: 100%; height: auto; }
tr.current td { background: #eef2ff; }
table.trend th, table.trend td { padding: 5px 7px; }
table.trend thead th { white-space: normal; vertical-align: bottom; }
.kv table { font-size: 12.5px; }
.kv th { color: var(--muted); font-weight: 500; width: 45%; }
.kv td { overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 8px; }
@media (max-width: 800px) {
  .meta { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .grid-2, .grid-3 { grid-template-columns: 1fr; }
}
"""


GALLERY_CSS = """
.gallery { margin-bottom: 20px; }
.gallery h4 { font-size: 13px; margin: 10px 0 2px; font-weight: 600; }
.strip { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0; }
.pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.pair { display: flex; flex-wrap: wrap; gap: 8px; border: 1px solid var(--border); border-radius: 8px;
  padding: 8px; align-items: flex-start; }
.pair-stats { flex-basis: 100%; margin: 0; font-size: 12px; color: var(--muted); }
figure.sample { margin: 0; width: 132px; font-size: 11.5px; }
figure.sample-text, figure.sample-row { width: 220px; }
figure.sample figcaption { margin-top: 3px; color: var(--muted); overflow-wrap: anywhere; }
figure.sample .key { font-size: 11px; color: var(--fg); }
figure.sample .label { background: var(--none-bg); border-radius: 4px; padding: 0 4px; }
figure.sample .stat { display: block; }
.side { text-transform: uppercase; font-size: 10px; letter-spacing: .05em; font-weight: 600; }
.side-real { color: #2563eb; }
.side-synthetic, .side-holdout { color: #ea580c; }
img.thumb { display: block; width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
  background: #f3f4f6; border-radius: 4px; }
.preview-text { margin: 0; padding: 6px 8px; background: #f9fafb; border-left: 3px solid var(--border);
  font-size: 12px; max-height: 9em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.preview-row { margin: 0; font-size: 11.5px; display: grid; grid-template-columns: auto 1fr; gap: 0 6px;
  background: #f9fafb; padding: 4px 6px; border-radius: 4px; max-height: 12em; overflow: auto; }
dl.preview-row div { display: contents; }
dl.preview-row dt { color: var(--muted); }
dl.preview-row dd { margin: 0; overflow-wrap: anywhere; }
.row-label { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.mode-group, .dup-group { border-top: 1px solid var(--border); padding-top: 6px; margin-top: 6px; }
.mode-group p.muted, .dup-group p.muted { margin: 0 0 4px; font-size: 12.5px; }
ol.mode-strip { list-style: none; display: flex; flex-wrap: wrap; gap: 8px; padding: 0; margin: 8px 0 0; }
li.mode-card { width: 110px; font-size: 11px; display: flex; flex-direction: column; }
li.mode-card img.thumb { width: 56px; height: 56px; }
li.mode-card .preview-text { max-height: 4.5em; font-size: 11px; }
.mode-name { font-weight: 600; }
"""
