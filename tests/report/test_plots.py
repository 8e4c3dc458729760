"""The inline-SVG plotting helpers: geometry stays inside the viewBox, bad input never raises."""

from __future__ import annotations

import math
import random
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from auditor.report import plots

_NUMBER_ATTRS = ("cx", "cy", "x", "y", "x1", "x2", "y1", "y2")


class _SvgShapes(HTMLParser):
    """Collects every element with its attributes, and the root viewBox."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()


def parse(svg: str) -> _SvgShapes:
    parser = _SvgShapes()
    parser.feed(svg)
    parser.close()
    assert parser.stack == [], f"unclosed tags {parser.stack}"
    assert parser.elements[0][0] == "svg"
    return parser


def view_box(svg: str) -> tuple[float, float]:
    _, _, width, height = (
        float(v)
        for v in parse(svg)
        .elements[0][1]["viewbox"]  # html.parser lower-cases attribute names
        .split()
    )
    return width, height


def all_coordinates(svg: str) -> list[tuple[str, float]]:
    """Every x/y-like number drawn, tagged 'x' or 'y', from attributes, point lists and paths."""
    coords: list[tuple[str, float]] = []
    for tag, attrs in parse(svg).elements[1:]:
        for name in _NUMBER_ATTRS:
            if name in attrs and tag != "svg":
                coords.append(("x" if "x" in name else "y", float(attrs[name])))
        for pair in attrs.get("points", "").split():
            x, y = pair.split(",")
            coords += [("x", float(x)), ("y", float(y))]
        for command, x, y in re.findall(r"([MLHV]?)(-?[\d.]+)(?:[ ,](-?[\d.]+))?", attrs.get("d", "")):
            if command == "V":
                coords.append(("y", float(x)))
            elif command == "H":
                coords.append(("x", float(x)))
            elif y:
                coords += [("x", float(x)), ("y", float(y))]
    return coords


def assert_inside(svg: str) -> None:
    width, height = view_box(svg)
    coords = all_coordinates(svg)
    assert coords
    for axis, value in coords:
        assert math.isfinite(value)
        limit = width if axis == "x" else height
        assert 0 <= value <= limit, f"{axis}={value} outside 0..{limit}"


def count(svg: str, tag: str, cls: str | None = None) -> int:
    return sum(
        1
        for t, attrs in parse(svg).elements
        if t == tag and (cls is None or cls in attrs.get("class", "").split())
    )


# --- ticks and formatting ------------------------------------------------------------------------


def test_nice_ticks_are_round_and_inside() -> None:
    assert plots.nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = plots.nice_ticks(-3.7, 12.2)
    assert ticks == [0.0 - 0.0 + t for t in ticks]  # plain floats, no -0.0 surprises
    assert all(-3.7 <= t <= 12.2 for t in ticks) and 3 <= len(ticks) <= 10
    assert plots.nice_ticks(2, 2) == [2]
    assert plots.nice_ticks(math.nan, 1) == []


def test_log_ticks_are_powers_of_ten() -> None:
    assert plots.log_ticks(1e-3, 1) == [1e-3, 1e-2, 1e-1, 1.0]
    many = plots.log_ticks(1e-12, 1)
    assert len(many) <= 7 and all(math.log10(t).is_integer() for t in many)
    assert plots.log_ticks(0, 1) == []


def test_tick_formats() -> None:
    assert plots.format_tick(0.25, 0.25) == "0.25"
    assert plots.format_tick(20, 5) == "20"
    assert plots.format_tick(1e-6) == "1e-06"
    assert plots.format_log_tick(1e-4) == "10⁻⁴"
    assert plots.format_log_tick(10) == "10"
    assert plots.percent_tick(0.05) == "5%"


# --- scatter -------------------------------------------------------------------------------------


def test_scatter_points_land_in_view_box() -> None:
    real = [[math.cos(i) * i, math.sin(i) * 0.01 * i] for i in range(200)]
    synth = [[-5.0, 1e3], [7.5, -2.0], [math.nan, 1.0], [1.0]]  # NaN and short rows are skipped
    svg = plots.scatter_plot(
        [plots.ScatterSeries("real", real, plots.REAL_COLOR), plots.ScatterSeries("syn", synth, "#f00")],
        x_label="PC 1",
        y_label="PC 2",
    )
    assert_inside(svg)
    assert count(svg, "circle") == 200 + 2 + 2  # points + two legend dots
    assert "real" in svg and "syn" in svg


@pytest.mark.parametrize("series", [[], [plots.ScatterSeries("real", [], "#000")]])
def test_scatter_empty_input(series: list[plots.ScatterSeries]) -> None:
    svg = plots.scatter_plot(series)
    parse(svg)
    assert "No projection data" in svg


def test_scatter_single_point() -> None:
    assert_inside(plots.scatter_plot([plots.ScatterSeries("one", [[3.0, 3.0]], "#000")]))


def test_labels_are_escaped() -> None:
    svg = plots.scatter_plot([plots.ScatterSeries("<b>x</b>", [[0, 1], [1, 0]], "#000")], title="<i>")
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert "<i>" not in svg


# --- bars ----------------------------------------------------------------------------------------


def test_grouped_bars_with_highlights() -> None:
    svg = plots.grouped_bar_chart(
        ["a", "b", "c", "d"],
        [
            plots.BarGroup("real", [0.4, 0.3, 0.2, 0.1], "#00f"),
            plots.BarGroup("syn", [0.5, 0.0, 0.5, 0.0], "#f00"),
        ],
        highlight=[1, 3, 99],  # an out-of-range index is ignored
        highlight_label="starved",
        y_tick_format=plots.percent_tick,
    )
    assert_inside(svg)
    assert count(svg, "rect", "highlight") == 2
    assert "starved" in svg and "40%" in svg


def test_many_bars_thin_their_labels() -> None:
    n = 64
    svg = plots.grouped_bar_chart([f"#{i}" for i in range(n)], [plots.BarGroup("r", [1 / n] * n, "#000")])
    assert_inside(svg)
    assert 0 < svg.count("<text") < n


@pytest.mark.parametrize(
    ("categories", "groups"),
    [([], []), (["a"], []), (["a", "b"], [plots.BarGroup("r", [math.nan, math.inf], "#000")])],
)
def test_bars_empty_input(categories: list[str], groups: list[plots.BarGroup]) -> None:
    svg = plots.grouped_bar_chart(categories, groups)
    parse(svg)
    assert "No mode data" in svg


# --- lines ---------------------------------------------------------------------------------------


def test_line_chart_band_and_markers() -> None:
    series = plots.LineSeries(
        "fid",
        [0, 1, 2, 3],
        [10.0, 12.0, math.nan, 20.0],
        "#000",
        lows=[9.0, 11.0, None, 18.0],
        highs=[11.0, 13.5, None, 23.0],
    )
    svg = plots.line_chart([series], integer_x=True, markers=True)
    assert_inside(svg)
    assert count(svg, "circle", "point") == 3  # the NaN generation leaves a gap
    assert count(svg, "polygon", "band") == 1  # one band for the run 0-1; gen 3 alone gets an error bar
    assert count(svg, "path", "errorbar") == 1
    assert count(svg, "polyline") == 1  # a lone point after the gap is a marker, not a line


def test_line_chart_error_bars_style() -> None:
    series = plots.LineSeries(
        "m", [1, 2, 3], [0.5, 0.6, 0.7], "#000", lows=[0.4, 0.5, 0.6], highs=[0.6, 0.7, 0.8]
    )
    svg = plots.line_chart([series], error_style="bars")
    assert_inside(svg)
    assert count(svg, "path", "errorbar") == 3 and count(svg, "polygon", "band") == 0


def test_log_scale_with_zeros_and_noise() -> None:
    spectrum = [0.5, 0.2, 0.1, 1e-3, 1e-25, 0.0, 0.0, -1e-18]
    svg = plots.line_chart([plots.LineSeries("real", list(range(1, 9)), spectrum, "#000")], log_y=True)
    assert_inside(svg)
    assert not re.search(r"\b(nan|inf)\b", svg.lower())
    assert count(svg, "circle", "point") == 4  # only the values on the axis are drawn


def test_log_scale_all_zero_is_empty() -> None:
    svg = plots.line_chart([plots.LineSeries("z", [1, 2], [0.0, 0.0], "#000")], log_y=True)
    assert "No data" in svg


@pytest.mark.parametrize(
    "series",
    [
        [],
        [plots.LineSeries("e", [], [], "#000")],
        [plots.LineSeries("n", [1, 2], [math.nan, math.inf], "#000")],
    ],
)
def test_line_chart_empty_input(series: list[plots.LineSeries]) -> None:
    svg = plots.line_chart(series)
    parse(svg)
    assert "No data" in svg


def test_line_chart_single_point() -> None:
    svg = plots.line_chart(
        [plots.LineSeries("one", [4], [0.7], "#000", lows=[0.6], highs=[0.8])], integer_x=True
    )
    assert_inside(svg)
    assert count(svg, "circle", "point") == 1
    assert count(svg, "path", "errorbar") == 1


def test_point_colours_override_series_colour() -> None:
    series = plots.LineSeries("m", [1, 2], [1.0, 2.0], "#000", point_colors=[None, "#f00"])
    svg = plots.line_chart([series], markers=True)
    fills = [
        attrs["fill"]
        for tag, attrs in parse(svg).elements
        if tag == "circle" and attrs.get("class") == "point"
    ]
    assert fills == ["#000", "#f00"]


def test_empty_plot_is_valid_svg() -> None:
    svg = plots.empty_plot("<nothing>", width=200, height=100)
    assert view_box(svg) == (200, 100)
    assert "&lt;nothing&gt;" in svg


# --- latent map ----------------------------------------------------------------------------------


def blob(n: int, centre: tuple[float, float], seed: int, spread: float = 1.0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[centre[0] + rng.gauss(0, spread), centre[1] + rng.gauss(0, spread)] for _ in range(n)]


def two_sided_map(**options: Any) -> str:
    real = blob(300, (0.0, 0.0), 0) + blob(300, (12.0, 3.0), 1)
    synthetic = [*blob(400, (6.0, -40.0), 2, spread=2.0), [math.nan, 1.0], [2.0]]  # the last two: skipped
    return plots.map_plot(
        [
            plots.MapSide(
                "real", "real", real, plots.REAL_COLOR, "dot", indices=range(1000, 1600), flagged={0, 1, 2}
            ),
            plots.MapSide(
                "synthetic",
                "synthetic",
                synthetic,
                plots.SYNTHETIC_COLOR,
                "square",
                indices=range(402),
                groups=[i % 3 for i in range(402)],
                flagged=range(0, 402, 2),
                flag_marker="cross",
                dashed=True,
            ),
        ],
        highlighted=[(1, 5), (0, 3), (1, 400), (0, 9999)],  # a skipped point, a bad position: nothing
        highlight_label="copy",
        group_label="colour: mode",
        x_label="t-SNE 1",
        y_label="t-SNE 2",
        **options,
    )


def contour_runs(svg: str) -> list[list[str]]:
    """Each contour path's closed runs (``M ... Z``), per path."""
    paths = [attrs["d"] for tag, attrs in parse(svg).elements if "contour" in attrs.get("class", "").split()]
    return [re.findall(r"M[^MZ]*Z", d) for d in paths]


def test_map_geometry_lands_in_view_box_with_one_scale() -> None:
    svg = two_sided_map()
    assert_inside(svg)
    # Both axes share the scale: the synthetic blob 43 units below real is drawn 43 units' worth below,
    # however wide the frame.
    wide = two_sided_map(width=900, height=420)
    assert_inside(wide)
    points = [
        (float(a["cx"]), float(a["cy"]))
        for t, a in parse(wide).elements
        if t == "circle" and "data-index" in a
    ]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assert max(xs) - min(xs) < (max(ys) - min(ys)) * 2  # real spans ~16 x 12 units: not stretched to 900 px


def test_map_points_carry_side_index_group_and_kind() -> None:
    svg = two_sided_map()
    elements = parse(svg).elements
    indexed = [a["data-index"] for _, a in elements if "data-index" in a]
    assert sorted(map(int, indexed)) == sorted([*range(1000, 1600), *range(400)])  # NaN / short rows skipped
    groups = [a for t, a in elements if t == "g" and a.get("class") == "points"]
    assert {(g["data-side"], g["data-kind"]) for g in groups} == {
        ("real", "plain"),
        ("real", "flagged"),
        ("synthetic", "plain"),
        ("synthetic", "flagged"),
    }
    assert {g.get("data-mode") for g in groups if g["data-side"] == "synthetic"} == {"0", "1", "2"}
    assert count(svg, "circle") >= 600 and count(svg, "rect") >= 200  # dots and rings; squares
    crosses = [a for t, a in elements if t == "path" and "data-index" in a]
    assert len(crosses) == 200
    highlights = svg[svg.index('<g class="highlights"') :]
    assert highlights[: highlights.index("</g>")].count("<circle") == 2


def test_map_contours_are_closed_and_nested_per_side() -> None:
    runs = contour_runs(two_sided_map())
    # Real: two blobs, each inside its own 50% and 90% lines (or one 90% line around both);
    # synthetic: one blob, one line per level.
    assert len(runs) == 2 * len(plots.DENSITY_MASSES)
    real_50, real_90, synth_50, synth_90 = runs
    assert len(real_50) == 2 and 1 <= len(real_90) <= 2
    assert len(synth_50) == 1 and len(synth_90) == 1
    assert all(run.endswith("Z") for path in runs for run in path)


def test_density_levels_and_grid() -> None:
    points = [(float(p[0]), float(p[1])) for p in blob(500, (10.0, 10.0), 3)]
    grid = plots.density_grid(points, (0.0, 0.0), 0.5, (41, 41))
    total = sum(map(sum, grid))
    assert total == pytest.approx(500, rel=0.01)  # linear binning and a normalised kernel keep the mass
    assert all(v == 0.0 for v in grid[0] + grid[-1] + [row[0] for row in grid] + [row[-1] for row in grid])
    inner, outer = plots.density_levels(grid, (0.5, 0.9))
    assert inner > outer > 0
    assert plots.density_levels([[0.0, 0.0], [0.0, 0.0]], (0.5,)) == []
    # A level above the peak draws nothing; a circle's iso-line is one closed run.
    assert plots.contour_paths(grid, 2 * max(map(max, grid)), lambda i, j: (i, j)) == ""
    assert plots.contour_paths(grid, inner, lambda i, j: (i, j)).count("M") == 1


@pytest.mark.parametrize("points", [[], [[math.nan, 0.0]]])
def test_map_empty_input(points: list[list[float]]) -> None:
    svg = plots.map_plot([plots.MapSide("real", "real", points, "#000")])
    parse(svg)
    assert "No map data" in svg


def test_map_single_point_and_escaping() -> None:
    svg = plots.map_plot([plots.MapSide('"><b>', "<i>x</i>", [[1.0, 1.0]], "#000")], title="<t>")
    assert_inside(svg)
    assert "<b>" not in svg and "<i>" not in svg and "<t>" not in svg
