"""Tiny inline-SVG plotting: scatter, grouped bars and line charts for the self-contained HTML report.

No plotting library on purpose: the report must be a single offline file, and these three chart types
are all it needs. Every function returns an ``<svg>`` string whose ``viewBox`` is ``0 0 width height``
and whose drawn coordinates all lie inside it. Empty or all-non-finite input gives a "No data" panel
instead of raising, so a report never fails on one missing plot.

The SVG has no ``xmlns``: it is meant to be inlined in HTML5, where the namespace is implied, and this
keeps the report free of any ``http://`` string a network scanner might flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal, Protocol, TypeGuard, cast

REAL_COLOR = "#2563eb"
SYNTHETIC_COLOR = "#ea580c"
HIGHLIGHT_COLOR = "#dc2626"
TREND_COLOR = "#4f46e5"
_GRID = "#e5e7eb"
_AXIS = "#9ca3af"
_TEXT = "#4b5563"
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_CHAR_WIDTH = 6.2  # rough px per character at font-size 11, for legend layout only
# Below this many decades under the maximum, values on a log axis are numerical noise (e.g. clamped
# eigenvalues of a rank-deficient covariance) and would squash the interesting part of the plot.
_LOG_DECADES_MAX = 10
_MARKER_LIMIT = 40  # series longer than this are drawn as plain lines: markers would only add clutter

TickFormat = Callable[[float], str]


@dataclass(frozen=True)
class ScatterSeries:
    label: str
    points: Sequence[Sequence[float]]
    color: str


@dataclass(frozen=True)
class BarGroup:
    label: str
    values: Sequence[float]
    color: str


@dataclass(frozen=True)
class LineSeries:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    lows: Sequence[float | None] | None = None
    highs: Sequence[float | None] | None = None
    point_colors: Sequence[str | None] | None = None  # per-point marker colour, e.g. failed generations


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the SVG, in pixels."""

    left: float
    top: float
    right: float
    bottom: float


class _Scale(Protocol):
    def __call__(self, value: float) -> float: ...

    def ticks(self) -> list[float]: ...


@dataclass(frozen=True)
class LinearScale:
    lo: float
    hi: float
    start: float
    end: float
    target_ticks: int = 5

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self) -> list[float]:
        return nice_ticks(self.lo, self.hi, self.target_ticks)


@dataclass(frozen=True)
class LogScale:
    lo: float  # both positive
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        a, b = math.log10(self.lo), math.log10(self.hi)
        return self.start + (math.log10(value) - a) / (b - a) * (self.end - self.start)

    def ticks(self) -> list[float]:
        return log_ticks(self.lo, self.hi)


def _finite(value: object) -> TypeGuard[float]:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) inside ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    index = first
    while index * step <= hi + step * 1e-9:
        ticks.append(round(index * step, 12) + 0.0)  # + 0.0 turns -0.0 into 0.0
        index += 1
    return ticks


def _nice_domain(lo: float, hi: float, target: int = 5) -> tuple[float, float]:
    """Widen ``[lo, hi]`` to whole tick steps so the axis starts and ends on a labelled tick."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, target)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside ``[lo, hi]``, thinned to at most ~6 labels."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return []
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    stride = max(1, math.ceil((last - first + 1) / 6))
    return [10.0**k for k in range(first, last + 1, stride)]


def _log_domain(values: Sequence[float]) -> tuple[float, float] | None:
    positive = [v for v in values if _finite(v) and v > 0]
    if not positive:
        return None
    hi = max(positive)
    lo = max(min(positive), hi * 10.0**-_LOG_DECADES_MAX)
    lo_exp, hi_exp = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if hi_exp <= lo_exp:
        hi_exp = lo_exp + 1
    return 10.0**lo_exp, 10.0**hi_exp


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_tick(value: float, step: float | None = None) -> str:
    """A tick label with just enough decimals to tell neighbouring ticks apart."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.2g}"
    decimals = 0
    if step is not None and step > 0:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        if round(step / 10.0 ** math.floor(math.log10(step) + 1e-9), 6) == 2.5:
            decimals += 1
    return f"{value:.{decimals}f}"


def format_log_tick(value: float) -> str:
    exponent = round(math.log10(value))
    if 0 <= exponent <= 3:
        return f"{10**exponent}"
    return "10" + str(exponent).translate(_SUPERSCRIPT)


def percent_tick(value: float) -> str:
    return f"{value * 100:.0f}%" if value * 100 >= 1 or value == 0 else f"{value * 100:.1f}%"


def _step_of(ticks: Sequence[float]) -> float | None:
    return ticks[1] - ticks[0] if len(ticks) > 1 else None


def _open_svg(width: int, height: int, title: str) -> str:
    label = escape(title or "chart", quote=True)
    return (
        f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{label}" font-family="{_FONT}" font-size="11" fill="{_TEXT}">'
        f"<title>{escape(title or 'chart')}</title>"
    )


def empty_plot(message: str = "No data", *, width: int = 640, height: int = 300) -> str:
    """A placeholder panel: keeps a layout intact when a plot has nothing to show."""
    return (
        _open_svg(width, height, message)
        + f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" fill="none" stroke="{_GRID}" '
        'stroke-dasharray="4 4" rx="6"/>'
        + f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
        f'dominant-baseline="middle">{escape(message)}</text></svg>'
    )


def _series_open(label: str, attrs: str = "") -> str:
    extra = f" {attrs}" if attrs else ""
    return f'<g class="series" data-series="{escape(label, quote=True)}"{extra}>'


def _legend(entries: Sequence[tuple[str, str, str]], right: float, y: float) -> str:
    """Right-aligned horizontal legend; ``entries`` are (label, colour, kind) with kind dot|line|box."""
    widths = [22 + len(label) * _CHAR_WIDTH for label, _, _ in entries]
    x = right - sum(widths) - 12 * (len(entries) - 1)
    parts = ['<g class="legend">']
    for (label, color, kind), w in zip(entries, widths, strict=True):
        if kind == "line":
            parts.append(
                f'<line x1="{_f(x)}" y1="{_f(y)}" x2="{_f(x + 14)}" y2="{_f(y)}" stroke="{color}" '
                'stroke-width="2"/>'
            )
        elif kind == "box":
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(y - 5)}" width="14" height="10" fill="{color}" '
                f'fill-opacity="0.15" stroke="{color}" stroke-opacity="0.5"/>'
            )
        else:
            parts.append(f'<circle cx="{_f(x + 7)}" cy="{_f(y)}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{_f(x + 20)}" y="{_f(y)}" dominant-baseline="middle">{escape(label)}</text>')
        x += w + 12
    parts.append("</g>")
    return "".join(parts)


def _y_axis(scale: _Scale, frame: _Frame, fmt: TickFormat | None, label: str, log: bool) -> str:
    ticks = scale.ticks()
    step = _step_of(ticks)
    parts = ['<g class="y-axis">']
    for tick in ticks:
        y = scale(tick)
        text = fmt(tick) if fmt else (format_log_tick(tick) if log else format_tick(tick, step))
        parts.append(
            f'<line x1="{_f(frame.left)}" y1="{_f(y)}" x2="{_f(frame.right)}" y2="{_f(y)}" stroke="{_GRID}"/>'
            f'<text x="{_f(frame.left - 6)}" y="{_f(y)}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(text)}</text>"
        )
    if label:
        cy = (frame.top + frame.bottom) / 2
        parts.append(
            f'<text x="12" y="{_f(cy)}" text-anchor="middle" transform="rotate(-90 12 {_f(cy)})">'
            f"{escape(label)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _x_axis(
    scale: _Scale | None,
    frame: _Frame,
    fmt: TickFormat | None,
    label: str,
    height: int,
    ticks: Sequence[float] | None = None,
) -> str:
    parts = [
        '<g class="x-axis">',
        f'<line x1="{_f(frame.left)}" y1="{_f(frame.bottom)}" x2="{_f(frame.right)}" y2="{_f(frame.bottom)}" '
        f'stroke="{_AXIS}"/>',
    ]
    if scale is not None:
        ticks = list(ticks) if ticks is not None else scale.ticks()
        step = _step_of(ticks)
        for tick in ticks:
            x = scale(tick)
            text = fmt(tick) if fmt else format_tick(tick, step)
            parts.append(
                f'<line x1="{_f(x)}" y1="{_f(frame.bottom)}" x2="{_f(x)}" y2="{_f(frame.bottom + 4)}" '
                f'stroke="{_AXIS}"/><text x="{_f(x)}" y="{_f(frame.bottom + 16)}" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
    if label:
        parts.append(
            f'<text x="{_f((frame.left + frame.right) / 2)}" y="{height - 6}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _frame(width: int, height: int, *, y_label: bool, x_label: bool, legend: bool) -> _Frame:
    return _Frame(
        left=62 if y_label else 48,
        top=30 if legend else 12,
        right=width - 14,
        bottom=height - (40 if x_label else 26),
    )


# --- scatter -------------------------------------------------------------------------------------


def scatter_plot(
    series: Sequence[ScatterSeries],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 560,
    height: int = 420,
    radius: float = 2.4,
) -> str:
    """Points of each series in its colour (semi-transparent so overlap stays visible), with a legend."""
    clean = [
        [(float(p[0]), float(p[1])) for p in s.points if len(p) >= 2 and _finite(p[0]) and _finite(p[1])]
        for s in series
    ]
    all_points = [p for pts in clean for p in pts]
    if not all_points:
        return empty_plot("No projection data", width=width, height=height)
    frame = _frame(width, height, y_label=bool(y_label), x_label=bool(x_label), legend=True)
    x_lo, x_hi = _nice_domain(min(p[0] for p in all_points), max(p[0] for p in all_points))
    y_lo, y_hi = _nice_domain(min(p[1] for p in all_points), max(p[1] for p in all_points))
    xs = LinearScale(x_lo, x_hi, frame.left, frame.right)
    ys = LinearScale(y_lo, y_hi, frame.bottom, frame.top)
    parts = [_open_svg(width, height, title), _y_axis(ys, frame, None, y_label, log=False)]
    parts.append(_x_axis(xs, frame, None, x_label, height))
    for s, pts in zip(series, clean, strict=True):
        parts.append(_series_open(s.label, f'fill="{s.color}" fill-opacity="0.45"'))
        parts.extend(f'<circle cx="{_f(xs(x))}" cy="{_f(ys(y))}" r="{radius}"/>' for x, y in pts)
        parts.append("</g>")
    parts.append(_legend([(s.label, s.color, "dot") for s in series], frame.right, 14))
    parts.append("</svg>")
    return "".join(parts)


# --- grouped bars --------------------------------------------------------------------------------


def grouped_bar_chart(
    categories: Sequence[str],
    groups: Sequence[BarGroup],
    *,
    highlight: Sequence[int] = (),
    highlight_label: str = "",
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    y_tick_format: TickFormat | None = None,
    value_format: TickFormat | None = None,
    width: int = 640,
    height: int = 300,
) -> str:
    """One cluster of bars per category; ``highlight`` indices get a tinted background band."""
    n = len(categories)
    values = [v for g in groups for v in g.values[:n] if _finite(v)]
    if n == 0 or not groups or not values:
        return empty_plot("No mode data", width=width, height=height)
    show_legend = True
    frame = _frame(width, height, y_label=bool(y_label), x_label=bool(x_label), legend=show_legend)
    y_lo, y_hi = _nice_domain(min(0.0, *values), max(0.0, *values) or 1.0)
    ys = LinearScale(y_lo, y_hi, frame.bottom, frame.top)
    band = (frame.right - frame.left) / n
    bar = band * 0.8 / len(groups)
    fmt = value_format or (lambda v: f"{v:.4g}")
    parts = [_open_svg(width, height, title), _y_axis(ys, frame, y_tick_format, y_label, log=False)]
    marked = sorted({i for i in highlight if 0 <= i < n})
    parts.append('<g class="highlights">')
    parts.extend(
        f'<rect class="highlight" x="{_f(frame.left + i * band)}" y="{_f(frame.top)}" width="{_f(band)}" '
        f'height="{_f(frame.bottom - frame.top)}" fill="{HIGHLIGHT_COLOR}" fill-opacity="0.12"/>'
        for i in marked
    )
    parts.append("</g>")
    zero = ys(max(y_lo, 0.0))
    for j, group in enumerate(groups):
        parts.append(_series_open(group.label, f'fill="{group.color}"'))
        for i, value in enumerate(group.values[:n]):
            if not _finite(value):
                continue
            x = frame.left + i * band + band * 0.1 + j * bar
            top = ys(min(max(value, y_lo), y_hi))
            tip = f"{categories[i]} · {group.label}: {fmt(value)}"
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(min(top, zero))}" width="{max(bar - 0.5, 0.5):.1f}" '
                f'height="{_f(abs(zero - top))}"><title>{escape(tip)}</title></rect>'
            )
        parts.append("</g>")
    # Label only as many categories as fit; the tooltips carry every one of them.
    stride = max(1, math.ceil(26 / band))
    parts.append(_x_axis(None, frame, None, x_label, height))
    parts.append('<g class="x-labels" text-anchor="middle">')
    label_y = _f(frame.bottom + 14)
    parts.extend(
        f'<text x="{_f(frame.left + (i + 0.5) * band)}" y="{label_y}">{escape(categories[i])}</text>'
        for i in range(0, n, stride)
    )
    parts.append("</g>")
    entries = [(g.label, g.color, "dot") for g in groups]
    if marked and highlight_label:
        entries.append((highlight_label, HIGHLIGHT_COLOR, "box"))
    parts.append(_legend(entries, frame.right, 14))
    parts.append("</svg>")
    return "".join(parts)


# --- line chart ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    x: float
    y: float | None  # None: not drawable (missing, non-finite, or off a log axis)
    low: float | None
    high: float | None
    color: str | None


def _series_points(s: LineSeries, y_ok: Callable[[float | None], bool], floor: float | None) -> list[_Point]:
    points = []
    # strict=False: with unequal lengths, draw the common prefix rather than fail the whole report.
    for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=False)):
        if not _finite(x):
            continue
        low = s.lows[i] if s.lows is not None and i < len(s.lows) else None
        high = s.highs[i] if s.highs is not None and i < len(s.highs) else None
        low = low if y_ok(low) else (floor if floor is not None and _finite(low) else None)
        color = s.point_colors[i] if s.point_colors is not None and i < len(s.point_colors) else None
        points.append(
            _Point(float(x), float(y) if y_ok(y) else None, low, high if y_ok(high) else None, color)
        )
    return points


def _runs(items: Sequence[_Point], key: Callable[[_Point], bool]) -> list[list[_Point]]:
    """Maximal consecutive runs of points satisfying ``key``: a gap breaks the line or band."""
    runs: list[list[_Point]] = []
    current: list[_Point] = []
    for item in items:
        if key(item):
            current.append(item)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _error_marks(
    points: Sequence[_Point], color: str, style: Literal["band", "bars"], xs: _Scale, ys: _Scale
) -> list[str]:
    parts = []
    for run in _runs(points, lambda p: p.low is not None and p.high is not None):
        if style == "band" and len(run) > 1:
            upper = [f"{_f(xs(p.x))},{_f(ys(p.high))}" for p in run if p.high is not None]
            lower = [f"{_f(xs(p.x))},{_f(ys(p.low))}" for p in reversed(run) if p.low is not None]
            outline = " ".join(upper + lower)
            parts.append(f'<polygon class="band" points="{outline}" fill="{color}" fill-opacity="0.15"/>')
            continue
        for p in run:  # bars style, or a lone interval a band could not show
            x, lo, hi = xs(p.x), ys(p.low or 0.0), ys(p.high or 0.0)
            parts.append(
                f'<path class="errorbar" d="M{_f(x)} {_f(lo)}V{_f(hi)}M{_f(x - 4)} {_f(lo)}H{_f(x + 4)}'
                f'M{_f(x - 4)} {_f(hi)}H{_f(x + 4)}" stroke="{color}" stroke-width="1.2" fill="none"/>'
            )
    return parts


def _point_title(label: str, p: _Point, fmt: TickFormat) -> str:
    text = f"{label}: x={fmt(p.x)}, y={fmt(p.y) if p.y is not None else 'n/a'}"
    if p.low is not None and p.high is not None:
        text += f" [{fmt(p.low)}, {fmt(p.high)}]"
    return text


def line_chart(
    series: Sequence[LineSeries],
    *,
    log_y: bool = False,
    error_style: Literal["band", "bars"] = "band",
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 300,
    markers: bool | None = None,
    integer_x: bool = False,
    x_tick_format: TickFormat | None = None,
    y_tick_format: TickFormat | None = None,
    legend: bool = True,
) -> str:
    """Lines with optional CI band or error bars; ``log_y`` drops values <= 0 (they break the line)."""
    raw_y = [
        float(v) for s in series for seq in (s.ys, s.lows or [], s.highs or []) for v in seq if _finite(v)
    ]
    raw_x = [float(x) for s in series for x in s.xs if _finite(x)]
    domain = _log_domain(raw_y) if log_y else (_nice_domain(min(raw_y), max(raw_y)) if raw_y else None)
    if domain is None or not raw_x:
        return empty_plot("No data", width=width, height=height)
    y_lo, y_hi = domain

    # The domain's bounds carry float rounding; on a log axis the slack must be relative to the bound.
    lower = y_lo * (1 - 1e-9) if log_y else y_lo - (y_hi - y_lo) * 1e-9
    upper = y_hi * (1 + 1e-9) if log_y else y_hi + (y_hi - y_lo) * 1e-9

    def y_ok(v: float | None) -> bool:
        return _finite(v) and lower <= v <= upper

    floor = y_lo if log_y else None
    frame = _frame(width, height, y_label=bool(y_label), x_label=bool(x_label), legend=legend)
    ys: _Scale = (
        LogScale(y_lo, y_hi, frame.bottom, frame.top)
        if log_y
        else LinearScale(y_lo, y_hi, frame.bottom, frame.top)
    )
    x_lo, x_hi = min(raw_x), max(raw_x)
    pad = (x_hi - x_lo) * 0.04 if x_hi > x_lo else 0.5
    xs = LinearScale(x_lo - pad, x_hi + pad, frame.left, frame.right, target_ticks=6)
    x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if not integer_x or float(t).is_integer()]
    parts = [_open_svg(width, height, title), _y_axis(ys, frame, y_tick_format, y_label, log=log_y)]
    parts.append(_x_axis(xs, frame, x_tick_format, x_label, height, ticks=x_ticks))
    show_markers = markers if markers is not None else max(len(s.xs) for s in series) <= _MARKER_LIMIT
    fmt = y_tick_format or (lambda v: f"{v:.4g}")
    for s in series:
        points = _series_points(s, y_ok, floor)
        parts.append(_series_open(s.label))
        parts.extend(_error_marks(points, s.color, error_style, xs, ys))
        for run in _runs(points, lambda p: p.y is not None):
            if len(run) > 1:
                coords = " ".join(f"{_f(xs(p.x))},{_f(ys(p.y))}" for p in run if p.y is not None)
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="1.8" '
                    'stroke-linejoin="round"/>'
                )
            if show_markers or len(run) == 1:
                parts.extend(
                    f'<circle class="point" cx="{_f(xs(p.x))}" cy="{_f(ys(p.y))}" r="3.2" '
                    f'fill="{p.color or s.color}" stroke="#fff" stroke-width="1">'
                    f"<title>{escape(_point_title(s.label, p, fmt))}</title></circle>"
                    for p in run
                    if p.y is not None
                )
        parts.append("</g>")
    if legend:
        parts.append(_legend([(s.label, s.color, "line") for s in series], frame.right, 14))
    parts.append("</svg>")
    return "".join(parts)


# --- latent map ----------------------------------------------------------------------------------

# Colours of categories (modes) on the map, GROUP_COLORS[label % 10]: Tableau 10 without its blue and
# orange, which draw the real and synthetic contours over them.
GROUP_COLORS = (
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#79706e",
    "#8cd17d",
    "#499894",
)
_NEUTRAL = "#6b7280"  # legend symbols when the points are coloured by category
_GRID_CELLS = 48  # density grid nodes across the longer side of the map
_BANDWIDTH_CELLS = 1.25  # Gaussian kernel width, in grid cells (~2.6% of the map's extent)
DENSITY_MASSES = (0.5, 0.9)  # contours around the densest 50% and 90% of each side's points

MarkerKind = Literal["dot", "ring", "square", "cross"]


@dataclass(frozen=True)
class MapSide:
    """One side of a latent map: its points, the input row of each (``data-index``) and how they are
    drawn. ``groups`` (one category per point, e.g. its mode) colours the points from GROUP_COLORS;
    without it they take ``color``, which also draws the side's density contours. Points at the
    positions in ``flagged`` are drawn as ``flag_marker`` instead of ``marker``."""

    side: str  # the data-side of its points' groups: "real", "synthetic"
    label: str
    points: Sequence[Sequence[float]]
    color: str
    marker: MarkerKind = "dot"
    indices: Sequence[int] = ()
    keys: Sequence[str | None] = ()  # each point's sample key (``data-key``), where known
    groups: Sequence[int] = ()
    flagged: Collection[int] = ()
    flag_marker: MarkerKind = "ring"
    flag_label: str = ""
    dashed: bool = False  # its contours


def _marker(kind: MarkerKind, x: float, y: float, attrs: str) -> str:
    if kind in ("dot", "ring"):
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="2.2"{attrs}/>'
    if kind == "square":
        return f'<rect x="{_f(x - 1.9)}" y="{_f(y - 1.9)}" width="3.8" height="3.8"{attrs}/>'
    a, b, c, d = _f(x - 2.2), _f(y - 2.2), _f(x + 2.2), _f(y + 2.2)
    return f'<path d="M{a} {b}L{c} {d}M{a} {d}L{c} {b}"{attrs}/>'


def _paint(kind: MarkerKind, color: str) -> str:
    """The group attributes that draw ``kind`` in ``color``: filled shapes, or strokes."""
    if kind in ("dot", "square"):
        return f'fill="{color}" fill-opacity="0.55"'
    return f'fill="none" stroke="{color}" stroke-width="1.1" stroke-opacity="0.8"'


def density_grid(
    points: Sequence[tuple[float, float]], origin: tuple[float, float], step: float, shape: tuple[int, int]
) -> list[list[float]]:
    """A Gaussian kernel density of ``points`` on a grid (``grid[j][i]`` at ``origin + (i, j) * step``):
    each point binned linearly onto its four nearest nodes, then blurred by a separable kernel of
    ``_BANDWIDTH_CELLS`` nodes. The border nodes are zero, so every contour closes inside the grid."""
    nx, ny = shape
    grid = [[0.0] * nx for _ in range(ny)]
    for x, y in points:
        fx, fy = (x - origin[0]) / step, (y - origin[1]) / step
        i, j = math.floor(fx), math.floor(fy)
        if not (0 <= i < nx - 1 and 0 <= j < ny - 1):
            continue
        tx, ty = fx - i, fy - j
        grid[j][i] += (1 - tx) * (1 - ty)
        grid[j][i + 1] += tx * (1 - ty)
        grid[j + 1][i] += (1 - tx) * ty
        grid[j + 1][i + 1] += tx * ty
    radius = math.ceil(3 * _BANDWIDTH_CELLS)
    kernel = [math.exp(-0.5 * (t / _BANDWIDTH_CELLS) ** 2) for t in range(-radius, radius + 1)]
    kernel = [k / sum(kernel) for k in kernel]  # the grid keeps the points' mass

    def blur(row: list[float]) -> list[float]:
        n = len(row)
        return [
            sum(kernel[t + radius] * row[i + t] for t in range(-radius, radius + 1) if 0 <= i + t < n)
            for i in range(n)
        ]

    grid = [blur(row) for row in grid]
    columns = [blur([grid[j][i] for j in range(ny)]) for i in range(nx)]
    grid = [[columns[i][j] for i in range(nx)] for j in range(ny)]
    for j in range(ny):
        for i in range(nx):
            if i in (0, nx - 1) or j in (0, ny - 1):
                grid[j][i] = 0.0
    return grid


def density_levels(grid: Sequence[Sequence[float]], masses: Sequence[float]) -> list[float]:
    """For each mass p, the density above which the grid holds a share p of its total (the boundary of
    the highest-density region holding p of the points); fewer when the grid is empty."""
    values = sorted((v for row in grid for v in row if v > 0), reverse=True)
    total = sum(values)
    if total <= 0:
        return []
    levels, cumulative, index = [], 0.0, 0
    for p in sorted(masses):
        while index < len(values) and cumulative < p * total:
            cumulative += values[index]
            index += 1
        levels.append(values[max(index - 1, 0)])
    return levels


# Marching squares: corners of cell (i, j) are bit 0 (i, j), 1 (i+1, j), 2 (i+1, j+1), 3 (i, j+1);
# each edge is named by its lower node and direction, so neighbouring cells name a shared edge alike.
_CORNERS = ((0, 0), (1, 0), (1, 1), (0, 1))
_EDGES = (((0, 0), "h"), ((1, 0), "v"), ((0, 1), "h"), ((0, 0), "v"))  # bottom, right, top, left
_CORNER_EDGES = ((3, 0), (0, 1), (1, 2), (2, 3))  # the two edges that meet at each corner

_Edge = tuple[int, int, str]


def _cell_segments(above: Sequence[bool], centre_above: bool) -> list[tuple[int, int]]:
    """The contour segments of one cell, as pairs of its edges (0 bottom, 1 right, 2 top, 3 left)."""
    crossed = [e for e in range(4) if above[e] != above[(e + 1) % 4]]
    if len(crossed) == 2:
        return [(crossed[0], crossed[1])]
    if len(crossed) == 4:  # a saddle: cut off the two corners that disagree with the centre
        return [_CORNER_EDGES[c] for c in range(4) if above[c] != centre_above]
    return []


def contour_paths(
    grid: Sequence[Sequence[float]], level: float, to_px: Callable[[float, float], tuple[float, float]]
) -> str:
    """The iso-line ``level`` of ``grid`` (nodes in grid units, mapped by ``to_px``) as SVG path data:
    one ``M ... Z`` run per closed line."""
    ny, nx = len(grid), len(grid[0]) if grid else 0
    links: dict[_Edge, list[_Edge]] = {}
    for j in range(ny - 1):
        for i in range(nx - 1):
            values = [grid[j + dj][i + di] for di, dj in _CORNERS]
            above = [v >= level for v in values]
            if all(above) or not any(above):
                continue
            names = [(i + di, j + dj, kind) for (di, dj), kind in _EDGES]
            for a, b in _cell_segments(above, sum(values) / 4 >= level):
                links.setdefault(names[a], []).append(names[b])
                links.setdefault(names[b], []).append(names[a])

    def crossing(edge: _Edge) -> tuple[float, float]:
        i, j, kind = edge
        i2, j2 = (i + 1, j) if kind == "h" else (i, j + 1)
        v1, v2 = grid[j][i], grid[j2][i2]
        t = (level - v1) / (v2 - v1) if v2 != v1 else 0.5
        return to_px(i + t * (i2 - i), j + t * (j2 - j))

    parts, seen = [], set()
    for start in links:  # insertion order: the same grid gives the same path text
        if start in seen:
            continue
        line, previous, current = [start], None, start
        seen.add(start)
        while True:
            nexts = [e for e in links[current] if e != previous and e not in seen]
            if not nexts:
                break
            previous, current = current, nexts[0]
            seen.add(current)
            line.append(current)
        if len(line) < 3:
            continue
        coords = [crossing(e) for e in line]
        parts.append(
            f"M{_f(coords[0][0])} {_f(coords[0][1])}L"
            + " ".join(f"{_f(x)} {_f(y)}" for x, y in coords[1:])
            + "Z"
        )
    return "".join(parts)


def _map_legend(entries: Sequence[tuple[str, str, str, str]], left: float, top: float, right: float) -> str:
    """Left-aligned legend rows; ``entries`` are (label, colour, kind, style) with kind a marker kind,
    ``line`` (style ``dashed`` or ``solid``) or ``highlight``."""
    parts, x, y = ['<g class="legend">'], left, top
    for label, color, kind, style in entries:
        width = 22 + len(label) * _CHAR_WIDTH
        if x + width > right and x > left:
            x, y = left, y + 16
        if kind == "line":
            dash = ' stroke-dasharray="4 3"' if style == "dashed" else ""
            parts.append(
                f'<line x1="{_f(x)}" y1="{_f(y)}" x2="{_f(x + 14)}" y2="{_f(y)}" stroke="{color}" '
                f'stroke-width="1.6"{dash}/>'
            )
        elif kind == "highlight":
            parts.append(
                f'<circle cx="{_f(x + 7)}" cy="{_f(y)}" r="4.5" fill="none" stroke="{color}" '
                'stroke-width="1.6"/>'
            )
        else:
            marker = cast(MarkerKind, kind)
            parts.append(f"<g {_paint(marker, color)}>{_marker(marker, x + 7, y, '')}</g>")
        parts.append(f'<text x="{_f(x + 18)}" y="{_f(y)}" dominant-baseline="middle">{escape(label)}</text>')
        x += width + 10
    parts.append("</g>")
    return "".join(parts)


def _legend_rows(labels: Sequence[str], width: float) -> int:
    rows, x = 1, 0.0
    for label in labels:
        w = 22 + len(label) * _CHAR_WIDTH
        if x + w > width and x > 0:
            rows, x = rows + 1, 0.0
        x += w + 10
    return rows


def map_plot(
    sides: Sequence[MapSide],
    *,
    highlighted: Sequence[tuple[int, int]] = (),
    highlight_label: str = "",
    group_label: str = "",
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 560,
    height: int = 420,
    masses: Sequence[float] = DENSITY_MASSES,
) -> str:
    """A 2-D map: every side's points (its marker, flagged ones in its flag marker, coloured by group
    when it has groups) under its density contours, ``highlighted`` (side number, position) points
    ringed in HIGHLIGHT_COLOR on top. Both axes share one scale: distances on a map mean the same in
    every direction. Each side's point groups carry ``data-side`` (and ``data-mode``, ``data-kind``),
    each point its ``data-index``, for a page that joins them to the samples."""
    clean = [
        [
            (pos, (float(p[0]), float(p[1])))
            for pos, p in enumerate(s.points)
            if len(p) >= 2 and _finite(p[0]) and _finite(p[1])
        ]
        for s in sides
    ]
    every = [xy for pts in clean for _, xy in pts]
    if not every:
        return empty_plot("No map data", width=width, height=height)
    grouped = any(s.groups for s in sides)
    entries: list[tuple[str, str, str, str]] = []
    for s, pts in zip(sides, clean, strict=True):
        flagged = set(s.flagged)
        shown = {pos for pos, _ in pts}
        symbol = _NEUTRAL if grouped else s.color
        if shown - flagged:
            entries.append((s.label, symbol, s.marker, ""))
        if shown & flagged:
            entries.append((s.flag_label or f"{s.label}, flagged", symbol, s.flag_marker, ""))
    if highlighted and highlight_label:
        entries.append((highlight_label, HIGHLIGHT_COLOR, "highlight", ""))
    entries += [(f"{s.label} density", s.color, "line", "dashed" if s.dashed else "solid") for s in sides]
    if grouped and group_label:
        entries.append((group_label, GROUP_COLORS[0], "dot", ""))
    legend_height = 16 * _legend_rows([e[0] for e in entries], width - 24)
    frame = _Frame(
        left=24, top=10, right=width - 10, bottom=height - (22 if x_label else 8) - legend_height - 6
    )

    xs_all, ys_all = [p[0] for p in every], [p[1] for p in every]
    x_mid, y_mid = (min(xs_all) + max(xs_all)) / 2, (min(ys_all) + max(ys_all)) / 2
    span = max(max(xs_all) - min(xs_all), max(ys_all) - min(ys_all)) or 1.0
    # A margin of four kernel widths: the contours close before they reach the frame.
    inner = 1 - 2 * (4 * _BANDWIDTH_CELLS / _GRID_CELLS)
    scale = inner * min(frame.right - frame.left, frame.bottom - frame.top) / span
    cx, cy = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2

    def px(x: float, y: float) -> tuple[float, float]:
        return cx + (x - x_mid) * scale, cy - (y - y_mid) * scale

    parts = [_open_svg(width, height, title)]
    parts.append(
        f'<rect class="frame" x="{_f(frame.left)}" y="{_f(frame.top)}" '
        f'width="{_f(frame.right - frame.left)}" height="{_f(frame.bottom - frame.top)}" fill="none" '
        f'stroke="{_GRID}"/>'
    )
    if y_label:
        parts.append(
            f'<text x="12" y="{_f(cy)}" text-anchor="middle" transform="rotate(-90 12 {_f(cy)})">'
            f"{escape(y_label)}</text>"
        )
    if x_label:
        parts.append(
            f'<text x="{_f(cx)}" y="{_f(frame.bottom + 16)}" text-anchor="middle">{escape(x_label)}</text>'
        )

    for s, pts in zip(sides, clean, strict=True):
        flagged = set(s.flagged)
        buckets: dict[tuple[str, int], list[str]] = {}
        for pos, (x, y) in pts:
            kind = "flagged" if pos in flagged else "plain"
            group = s.groups[pos] if pos < len(s.groups) else -1
            index = f' data-index="{int(s.indices[pos])}"' if pos < len(s.indices) else ""
            key = s.keys[pos] if pos < len(s.keys) else None
            if key is not None:
                index += f' data-key="{escape(str(key), quote=True)}"'
            marker = s.flag_marker if kind == "flagged" else s.marker
            buckets.setdefault((kind, group), []).append(_marker(marker, *px(x, y), index))
        for (kind, group), elements in sorted(buckets.items()):
            marker = s.flag_marker if kind == "flagged" else s.marker
            color = GROUP_COLORS[group % len(GROUP_COLORS)] if s.groups and group >= 0 else s.color
            mode = f' data-mode="{group}"' if s.groups and group >= 0 else ""
            parts.append(
                f'<g class="points" data-side="{escape(s.side, quote=True)}" data-kind="{kind}"{mode} '
                f"{_paint(marker, color)}>"
            )
            parts.extend(elements)
            parts.append("</g>")

    # The density grid spans the frame in data units, one node spacing in both directions.
    step = max(frame.right - frame.left, frame.bottom - frame.top) / scale / (_GRID_CELLS - 1)
    origin = (x_mid - (cx - frame.left) / scale, y_mid - (frame.bottom - cy) / scale)
    shape = (
        math.floor((frame.right - frame.left) / scale / step) + 1,
        math.floor((frame.bottom - frame.top) / scale / step) + 1,
    )

    def grid_px(i: float, j: float) -> tuple[float, float]:
        return px(origin[0] + i * step, origin[1] + j * step)

    for s, pts in zip(sides, clean, strict=True):
        grid = density_grid([xy for _, xy in pts], origin, step, shape)
        levels = density_levels(grid, masses)
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        parts.append(
            f'<g class="contours" data-side="{escape(s.side, quote=True)}" fill="none" '
            f'stroke="{s.color}"{dash}>'
        )
        for rank, level in enumerate(levels):  # the densest region (smallest mass) drawn boldest
            d = contour_paths(grid, level, grid_px)
            if d:
                parts.append(
                    f'<path class="contour" d="{d}" stroke-width="{max(1.8 - 0.6 * rank, 0.6):.1f}"/>'
                )
        parts.append("</g>")

    if highlighted:
        parts.append(f'<g class="highlights" fill="none" stroke="{HIGHLIGHT_COLOR}" stroke-width="1.4">')
        for number, pos in highlighted:
            if 0 <= number < len(sides) and 0 <= pos < len(sides[number].points):
                p = sides[number].points[pos]
                if len(p) >= 2 and _finite(p[0]) and _finite(p[1]):
                    x, y = px(float(p[0]), float(p[1]))
                    parts.append(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="4.5"/>')
        parts.append("</g>")
    parts.append(_map_legend(entries, 12, height - legend_height + 4, width - 12))
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "DENSITY_MASSES",
    "GROUP_COLORS",
    "HIGHLIGHT_COLOR",
    "REAL_COLOR",
    "SYNTHETIC_COLOR",
    "TREND_COLOR",
    "BarGroup",
    "LineSeries",
    "LinearScale",
    "LogScale",
    "MapSide",
    "ScatterSeries",
    "contour_paths",
    "density_grid",
    "density_levels",
    "empty_plot",
    "format_log_tick",
    "format_tick",
    "grouped_bar_chart",
    "line_chart",
    "log_ticks",
    "map_plot",
    "nice_ticks",
    "percent_tick",
]
