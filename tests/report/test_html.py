"""The self-contained HTML report: structure, escaping, no network, graceful omission of sections."""

from __future__ import annotations

import copy
import html
import math
import random
import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any

import pytest

from auditor.metrics import METRICS
from auditor.pipeline.evaluate import ReportData
from auditor.report import fmt_number, render_report
from auditor.report.html import TREND_METRICS

MALICIOUS = "<script>alert(1)</script>"
_VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base", "embed", "track"}

# Realistic values: (value, ci_low, ci_high, holdout baseline).
_VALUES: dict[str, tuple[float, float, float, float]] = {
    "fid": (18.31, 16.92, 20.07, 2.41),
    "kid": (0.004123, 0.003581, 0.004665, 0.0000913),
    "precision": (0.7132, 0.6921, 0.7340, 0.7412),
    "recall": (0.4810, 0.4577, 0.5049, 0.7388),
    "density": (0.9312, 0.8890, 0.9701, 1.0054),
    "coverage": (0.6204, 0.5980, 0.6431, 0.9712),
    "vendi": (41.22, 39.40, 43.05, 55.10),
    "vendi_ratio": (0.7410, 0.7080, 0.7730, 0.9903),
    "mode_coverage": (0.8333, 0.7500, 0.9167, 1.0),
    "mode_jsd": (0.06120, 0.05240, 0.07010, 0.003120),
    "tail_recall": (0.2120, 0.1700, 0.2560, 0.6810),
    "effective_rank_ratio": (0.6830, 0.6610, 0.7040, 0.9920),
    "duplicate_rate": (0.01200, 0.00800, 0.01600, 0.0),
    "memorization_rate": (0.004000, 0.001500, 0.006500, 0.0),
    "authenticity": (0.8810, 0.8660, 0.8950, 0.8030),
}


def make_rules() -> list[dict[str, Any]]:
    def rule(
        metric: str, on: str, bound: str, threshold: float, observed: float, tier: str, outcome: str
    ) -> dict:
        op = ">=" if bound == "min" else "<="
        message = (
            f"{metric} {on} {observed:.4g} {'meets' if outcome == 'pass' else 'misses'} {op} {threshold}"
        )
        return {
            "metric": metric,
            "on": on,
            "bound": bound,
            "threshold": threshold,
            "observed": observed,
            "tier": tier,
            "outcome": outcome,
            "message": message,
        }

    return [
        rule("fid", "ci_high", "max", 25.0, 20.07, "fail", "pass"),
        rule("precision", "ci_low", "min", 0.6, 0.6921, "fail", "pass"),
        rule("recall", "value", "min", 0.6, 0.4810, "fail", "fail"),
        rule("tail_recall", "value", "min", 0.3, 0.2120, "warn", "warn"),
        rule("memorization_rate", "ci_high", "max", 0.01, 0.0065, "fail", "pass"),
    ]


def make_document(
    *,
    metrics: list[str] | None = None,
    reference: str = "s3://bucket/real/embeddings.parquet",
    passed: bool | None = False,
    holdout: bool = True,
) -> dict[str, Any]:
    """A result document shaped like :mod:`auditor.pipeline.result` with plausible numbers."""
    names = metrics if metrics is not None else list(METRICS)
    entries: dict[str, dict[str, Any]] = {}
    for name in names:
        value, low, high, base = _VALUES[name]
        entries[name] = {
            "value": value,
            "ci_low": low,
            "ci_high": high,
            "baseline": base if holdout else None,
        }
    if "kid" in entries:
        entries["kid"].update(std=0.000412, subset_size=1000)

    def dataset(ref: str, n: int) -> dict[str, Any]:
        return {"reference": ref, "n": n, "dim": 2048, "fingerprint": f"{n:016x}", "format": "parquet"}

    return {
        "schema_version": 1,
        "audit_id": "7f0c2b9a4d5e4f1a8b3c6d7e8f901234",
        "project": "image-gen-v3",
        "created_at": "2026-11-23T20:00:00+00:00",
        "real": dataset(reference, 10_000),
        "synthetic": dataset("/data/gen3/synthetic.npy", 10_000),
        "holdout": dataset("/data/real_holdout.npy", 5_000) if holdout else None,
        "extractor": {
            "name": "inception-v3",
            "version": "pt-1.0",
            "dim": 2048,
            "weights_sha256": "ab" * 32,
            "preprocessing": {"resize": 299},
        },
        "params": {"metrics": names, "nearest_k": 5, "bootstrap": 200, "seed": 0, "confidence": 0.95},
        "protocol": {"fingerprint": "3c9a0e5d1f2b7a64"},
        "lineage": {"parent_audit_id": "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6", "generation": 3},
        "metrics": entries,
        "warnings": [
            {"category": "SampleSizeWarning", "message": "set sizes differ 2.0x (n_real=10000, ...)"}
        ],
        "details": {"copy_threshold_tau": 0.0312, "num_modes": 24},
        "timings": {"load_s": 1.2, "embed_s": 0.0, "score_s": 14.8, "total_s": 16.1},
        "device": "cuda:0",
        "verdict": {"passed": passed, "rules": make_rules() if passed is not None else []},
    }


def make_report_data(seed: int = 0, n: int = 400, modes: int = 24, dims: int = 64) -> ReportData:
    """Real: a 5-cluster cloud; synthetic: tighter and missing a cluster; a faster-decaying spectrum."""
    rng = random.Random(seed)
    centres = [(math.cos(a) * 6, math.sin(a) * 4) for a in (0.0, 1.3, 2.5, 3.8, 5.0)]

    def cloud(spread: float, use: list[tuple[float, float]]) -> list[list[float]]:
        return [
            [c[0] + rng.gauss(0, spread), c[1] + rng.gauss(0, spread)]
            for c in (rng.choice(use) for _ in range(n))
        ]

    real_share = [rng.random() + 0.2 for _ in range(modes)]
    synth_share = [s * rng.uniform(0.6, 1.6) for s in real_share]
    for starved in (3, 11, 17):
        synth_share[starved] = real_share[starved] * 0.04
    spectrum_real = [(i + 1) ** -1.1 for i in range(dims)]
    spectrum_synth = [(i + 1) ** -1.7 for i in range(dims - 8)] + [0.0] * 8  # rank-deficient tail
    return ReportData(
        projection_method="tsne",
        projection_real=cloud(1.0, centres),
        projection_synthetic=cloud(0.6, centres[:4]),
        projection_real_index=rng.sample(range(10_000), n),
        projection_synthetic_index=rng.sample(range(10_000), n),
        projection_real_mode=[rng.randrange(modes) for _ in range(n)],
        projection_synthetic_mode=[rng.randrange(modes) for _ in range(n)],
        projection_marks={
            "uncovered": list(range(0, n, 5)),
            "off_manifold": list(range(0, n, 4)),
            "copy": [1, 7],
        },
        projection_neighbour_share=0.31,
        mode_real_share=[s / sum(real_share) for s in real_share],
        mode_synthetic_share=[s / sum(synth_share) for s in synth_share],
        spectrum_real=[v / sum(spectrum_real) for v in spectrum_real],
        spectrum_synthetic=[v / sum(spectrum_synth) for v in spectrum_synth],
    )


def make_trend(generations: int = 4) -> list[dict[str, Any]]:
    """A lineage whose recall and coverage decay generation by generation (model collapse)."""
    trend = []
    for g in range(generations):
        metrics = {}
        for name in TREND_METRICS:
            value, low, high, _ = _VALUES[name]
            drift = (1 + 0.15 * g) if not METRICS[name].higher_is_better else (1 - 0.08 * g)
            metrics[name] = {"value": value * drift, "ci_low": low * drift, "ci_high": high * drift}
        trend.append(
            {"audit_id": f"{g:02d}" + "e" * 30, "generation": g, "metrics": metrics, "passed": g < 2}
        )
    return trend


class Outline(HTMLParser):
    """Checks nesting and counts descendant tags under every element carrying an id or data-metric."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.inside: dict[str, Counter[str]] = {}
        self.attrs: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def _record(self, tag: str, attrs: list[tuple[str, str | None]]) -> str | None:
        values = {k: v or "" for k, v in attrs}
        self.attrs.append((tag, values))
        cls = values.get("class", "").split()
        for _, key in self.stack:
            if key is not None:
                self.inside[key][tag] += 1
                for c in cls:
                    self.inside[key][f"{tag}.{c}"] += 1
        key = values.get("id") or (f"metric:{values['data-metric']}" if "data-metric" in values else None)
        if key is not None:
            assert key not in self.inside, f"duplicate id {key}"
            self.ids.append(key)
            self.inside[key] = Counter()
        return key

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = self._record(tag, attrs)
        if tag not in _VOID:
            self.stack.append((tag, key))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


@pytest.fixture(scope="module")
def full_page() -> str:
    return render_report(make_document(reference=MALICIOUS), make_report_data(), trend=make_trend())


# --- structure -----------------------------------------------------------------------------------


def test_page_is_well_formed(full_page: str) -> None:
    parsed = outline(full_page)
    assert full_page.startswith("<!DOCTYPE html>")
    for tag in ("html", "head", "body", "main", "section", "table", "svg", "figure", "tr", "td"):
        assert full_page.count(f"<{tag}>") + full_page.count(f"<{tag} ") == full_page.count(f"</{tag}>"), tag
    for section in ("header", "verdict", "metrics", "warnings", "plots", "projection", "modes", "spectrum"):
        assert section in parsed.ids
    assert {"trend", "run"} <= set(parsed.ids)


def test_every_metric_is_listed_with_its_description(full_page: str) -> None:
    for name, spec in METRICS.items():
        assert f"<code>{name}</code>" in full_page
        assert html.escape(spec.summary) in full_page
    families = [
        m.group(1) for m in re.finditer(r'<tr class="family"><th colspan="\d+">(\w+)</th>', full_page)
    ]
    assert families == ["Fidelity", "Diversity", "Collapse", "Memorization"]


def test_header_carries_provenance(full_page: str) -> None:
    expected = [
        "image-gen-v3",
        "7f0c2b9a4d5e4f1a8b3c6d7e8f901234",
        "2026-11-23 20:00:00 UTC",
        "inception-v3 pt-1.0",
        "10,000 / 10,000 / 5,000",
        "cuda:0",
        "3c9a0e5d1f2b7a64",
        "generation 3",
    ]
    for text in expected:
        assert text in full_page, text


# --- safety --------------------------------------------------------------------------------------


def test_user_text_is_escaped(full_page: str) -> None:
    assert MALICIOUS not in full_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full_page
    assert "<script" not in full_page.lower()


def test_no_network_resources(full_page: str) -> None:
    lowered = full_page.lower()
    assert not re.search(r"\b(src|href|srcset|action|xlink:href)\s*=", lowered)
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert "default-src 'none'" in full_page  # the CSP blocks anything that slipped through


def test_network_looking_reference_is_text_not_a_resource() -> None:
    page = render_report(make_document(reference='https://evil.example/x.png" onerror="alert(1)'))
    assert 'onerror="' not in page
    assert not re.search(r"\b(src|href)\s*=", page.lower())


# --- verdict -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("passed", "text"), [(True, "PASSED"), (False, "FAILED"), (None, "NO POLICY")])
def test_verdict_banner(passed: bool | None, text: str) -> None:
    page = render_report(make_document(passed=passed))
    assert f'<span class="verdict-text">{text}</span>' in page
    assert page.count('<tr class="rule-') == (0 if passed is None else len(make_rules()))


def test_rule_table_rows(full_page: str) -> None:
    assert '<tr class="rule-fail">' in full_page and '<tr class="rule-warn">' in full_page
    assert "max ≤ 25.00" in full_page and "min ≥ 0.6000" in full_page
    assert "1 fail, 1 warn, 3 pass of 5 rules" in full_page
    assert "ci_high" in full_page and "ci_low" in full_page


def test_missing_verdict_means_no_policy() -> None:
    document = make_document()
    del document["verdict"]
    assert "NO POLICY" in render_report(document)


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (18.3123, "18.31"),
        (0.71321, "0.7132"),
        (0.004123, "0.004123"),
        (0.0000913, "9.130e-5"),
        (1234.5, "1,234"),
        (2_500_000.0, "2.500e6"),
        (-0.25, "-0.2500"),
        (-0.0000412, "-4.120e-5"),  # kid is unbiased and can go negative
        (0, "0"),
        (math.nan, "n/a"),
        (None, "n/a"),
        ("x", "n/a"),
        (math.inf, "∞"),
    ],
)
def test_fmt_number(value: object, text: str) -> None:
    assert fmt_number(value) == text


def test_none_intervals_and_nan_values_render_as_na() -> None:
    document = make_document(metrics=["precision", "recall"], holdout=False)
    document["metrics"]["precision"].update(ci_low=None, ci_high=None)
    document["metrics"]["recall"]["value"] = math.nan
    page = render_report(document)
    outline(page)
    table = page[page.index('<section id="metrics">') :]
    precision_row = re.search(r"<code>precision</code>.*?</tr>", table, re.S)
    recall_row = re.search(r"<code>recall</code>.*?</tr>", table, re.S)
    assert precision_row and recall_row
    assert "n/a" in precision_row.group(0) and "n/a" in recall_row.group(0)
    assert "Holdout baseline" not in page  # no baselines anywhere: no column


def test_baseline_column_when_holdout(full_page: str) -> None:
    assert "Holdout baseline" in full_page
    assert "noise floor" in full_page


# --- plots and omission --------------------------------------------------------------------------


def test_each_plot_has_an_svg(full_page: str) -> None:
    parsed = outline(full_page)
    for figure in ("projection", "modes", "spectrum"):
        assert parsed.inside[figure]["svg"] == 1, figure
    assert parsed.inside["projection"]["g.points"] >= 2 and parsed.inside["projection"]["path.contour"] >= 2
    assert parsed.inside["modes"]["rect.highlight"] == 3  # the three starved modes
    assert "3 of 24 modes" in full_page
    assert parsed.inside["spectrum"]["polyline"] == 2


def test_sections_omitted_without_data() -> None:
    document = make_document(metrics=["precision", "recall"], passed=None)
    document["warnings"] = []
    for report in (None, ReportData()):
        parsed = outline(render_report(document, report))
        for absent in ("plots", "projection", "modes", "spectrum", "warnings", "trend"):
            assert absent not in parsed.ids, absent
        assert "metrics" in parsed.ids and "verdict" in parsed.ids
    page = render_report(document)
    assert "<code>precision</code>" in page and "<code>fid</code>" not in page


def projection_of(page: str) -> str:
    start = page.index('<figure id="projection"')
    return page[start : page.index("</figure>", start)]


def test_latent_map_points_name_their_samples_with_marks_and_contours(full_page: str) -> None:
    data = make_report_data()
    figure = projection_of(full_page)
    indices = [int(i) for i in re.findall(r'data-index="(\d+)"', figure)]
    assert sorted(indices) == sorted(data.projection_real_index + data.projection_synthetic_index)
    # Points are grouped by side, kind (marked or not) and mode: every group says which.
    groups = re.findall(r'<g class="points" data-side="(\w+)" data-kind="(\w+)" data-mode="(\d+)"', figure)
    assert {side for side, _, _ in groups} == {"real", "synthetic"}
    assert {kind for _, kind, _ in groups} == {"plain", "flagged"}
    real_ring = re.search(r'data-side="real" data-kind="flagged"[^>]*fill="none"', figure)
    assert real_ring, "uncovered real samples are open rings"
    assert figure.count('<g class="contours" data-side=') == 2
    assert figure.count('class="contour"') == 2 * 2  # two levels per side
    assert re.search(r'<g class="highlights"[^>]*>(<circle [^>]*/>){2}</g>', figure)  # the two copies
    for legend in ("real, not covered", "synthetic, off-manifold", "copy of a real sample", "colour: mode"):
        assert legend in figure, legend
    assert "Latent map (t-SNE)" in figure and "31% real" in figure and "50% if the sides mixed" in figure


def test_latent_map_keeps_the_page_bounded() -> None:
    """Every point is one short element: the figure grows by well under 100 bytes a point."""
    small, large = (make_report_data(n=n) for n in (100, 500))
    pages = [projection_of(render_report(make_document(), data)) for data in (small, large)]
    per_point = (len(pages[1]) - len(pages[0])) / (2 * 400)
    assert per_point < 80, per_point


def test_a_stored_pca_projection_still_renders() -> None:
    """Reports stored before the map had a method (PCA scatters: points only) render as PCA."""
    data = make_report_data()
    stored = {"projection_real": data.projection_real, "projection_synthetic": data.projection_synthetic}
    figure = projection_of(render_report(make_document(), ReportData(**stored)))
    assert "Latent map (PCA)" in figure and "principal axes" in figure and "data-index" not in figure
    assert "<path" in figure and "data-mode" not in figure


def test_partial_report_data_renders_what_it_has() -> None:
    data = make_report_data()
    partial = ReportData(spectrum_real=data.spectrum_real, spectrum_synthetic=data.spectrum_synthetic)
    parsed = outline(render_report(make_document(), partial))
    assert "spectrum" in parsed.ids
    assert "projection" not in parsed.ids and "modes" not in parsed.ids


def test_minimal_document_does_not_crash() -> None:
    page = render_report({"audit_id": "x", "metrics": {}})
    parsed = outline(page)
    assert "metrics" not in parsed.ids and "NO POLICY" in page


# --- trend ---------------------------------------------------------------------------------------


def test_trend_section_has_one_chart_per_key_metric(full_page: str) -> None:
    parsed = outline(full_page)
    assert "Across generations" in full_page
    charts = [key for key in parsed.ids if key.startswith("metric:")]
    assert charts == [f"metric:{name}" for name in TREND_METRICS]
    for key in charts:
        assert parsed.inside[key]["circle.point"] == 4, key
        assert parsed.inside[key]["polygon.band"] == 1, key
    assert parsed.inside["trend"]["tr"] == 1 + 4  # header + one row per generation


def test_trend_with_gaps_and_subset() -> None:
    trend = make_trend(5)
    for entry in trend:
        entry["metrics"] = {k: v for k, v in entry["metrics"].items() if k in {"fid", "recall"}}
    trend[2]["metrics"]["recall"] = {"value": None, "ci_low": None, "ci_high": None}
    trend.reverse()  # order is restored by generation
    parsed = outline(render_report(make_document(), trend=trend))
    assert [k for k in parsed.ids if k.startswith("metric:")] == ["metric:fid", "metric:recall"]
    assert parsed.inside["metric:fid"]["circle.point"] == 5
    assert parsed.inside["metric:recall"]["circle.point"] == 4


def test_trend_marks_failed_generations_and_current_audit() -> None:
    trend = make_trend(3)
    document = make_document()
    trend[1]["audit_id"] = document["audit_id"]
    page = render_report(document, trend=trend)
    assert page.count('<tr class="current">') == 1
    assert page.count('fill="#dc2626" stroke="#fff"') == len(TREND_METRICS)  # generation 2 failed


def test_no_trend_section_for_empty_trend() -> None:
    assert 'id="trend"' not in render_report(make_document(), trend=[])


def test_document_is_not_mutated() -> None:
    document = make_document()
    before = copy.deepcopy(document)
    render_report(document, make_report_data(), trend=make_trend())
    assert document == before


def test_custom_title_is_escaped() -> None:
    page = render_report(make_document(), title="<b>Gen 3</b>")
    assert "<title>&lt;b&gt;Gen 3&lt;/b&gt;</title>" in page


def test_a_waived_rule_is_counted_and_shown_with_its_reason() -> None:
    from auditor.gates.waivers import apply_waivers
    from auditor.policy import Policy, evaluate_policy

    policy = Policy.from_dict({"rules": [{"metric": "fid", "max": 0.1}, {"metric": "recall", "min": 0.9}]})
    metrics = {"fid": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "recall": {"value": 0.5}}
    waiver = {
        "id": "w" * 32,
        "metric": "fid",
        "reason": "re-baselined",
        "created_by": "sda_x",
        "expires_at": "2027-01-01",
        "audit_id": None,
    }
    verdict = apply_waivers(evaluate_policy(policy, metrics), [waiver])
    html = render_report({"audit_id": "a" * 32, "project": "p", "metrics": metrics, "verdict": verdict})
    assert "1 fail, 1 waived of 2 rules" in html
    assert 'badge-waived">waived<' in html and "re-baselined" in html
