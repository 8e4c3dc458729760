"""The report's galleries and column findings: laid out from the stored galleries and previews, images
inline as data: URIs (nothing fetched), every stored string escaped, and nothing shown of the previews
when they are withheld."""

from __future__ import annotations

import re
from typing import Any

import pytest
from helpers.digit_images import digit_pixels, encode_image

from auditor.pipeline import previews as pv
from auditor.report import render_report

from .test_html import MALICIOUS, make_document, make_report_data, outline

N_MODES = 24
IMG_SRC = re.compile(
    r'<img class="thumb" src="data:image/webp;base64,[A-Za-z0-9+/]+={0,2}" width="32" height="32"'
)


def ref(side: str, index: int, key: str | None = None) -> dict[str, Any]:
    return {"side": side, "index": index, "key": key if key is not None else f"{side}/{index:04d}.png"}


def make_galleries() -> dict[str, Any]:
    return {
        "version": 1,
        "tau": 0.5,
        "holdout_nearest": {"median": 2.0, "p05": 1.25, "n": 5000},
        "copies": [
            {
                "synthetic": ref("synthetic", 7),
                "real": ref("real", 3),
                "distance": 0.0,
                "ratio": 0.0,
                "memorized": True,
                "holdout_closer": 0.0,
            },
            {
                "synthetic": ref("synthetic", 9, MALICIOUS),
                "real": ref("real", 4),
                "distance": 0.8,
                "ratio": 0.9,
                "memorized": False,
                "holdout_closer": 0.25,
            },
        ],
        "memorized": 1,
        "outside": [{"synthetic": ref("synthetic", 11), "distance": 9.5, "real_ball_count": 0}],
        "outside_total": 1,
        "missing": {
            "uncovered": 3,
            "groups": [
                {
                    "mode": 3,
                    "real_share": 0.12,
                    "synthetic_share": 0.0,
                    "uncovered": 3,
                    "size": 40,
                    "medoids": [ref("real", 20)],
                    "samples": [ref("real", 21), ref("real", 22)],
                }
            ],
        },
        "duplicates": {
            "total": 2,
            "groups": [{"size": 2, "distance": 0.0, "members": [ref("synthetic", 30), ref("synthetic", 31)]}],
        },
        "modes": [
            {"mode": m, "medoid": ref("real", 100 + m), "label": f"class-{m}", "label_share": 0.875}
            for m in range(N_MODES)
        ],
    }


def make_previews() -> dict[str, dict[str, Any]]:
    image = pv.thumbnail(encode_image(digit_pixels(0, 1)[0], "png"))
    previews: dict[str, dict[str, Any]] = {"real": {}, "synthetic": {}}
    for side, index in [
        ("synthetic", 7),
        ("real", 3),
        ("synthetic", 11),
        ("real", 20),
        ("real", 21),
        ("real", 22),
        ("synthetic", 30),
        ("synthetic", 31),
        *(("real", 100 + m) for m in range(N_MODES)),
    ]:
        previews[side][str(index)] = {**image, "key": f"{side}/{index:04d}.png", "label": "7"}
    previews["synthetic"]["9"] = {
        **pv.text_preview(MALICIOUS + " and more"),
        "key": MALICIOUS,
        "label": MALICIOUS,
    }
    # Tampered stored previews never become markup: a foreign media type, data breaking the attribute.
    previews["real"]["4"] = {**image, "media_type": "text/html"}
    previews["real"]["22"] = {**image, "data": 'AAAA" onerror="alert(1)'}
    return previews


def page(**kwargs: Any) -> str:
    report = make_report_data(modes=N_MODES)
    report.galleries = make_galleries()
    report.table_drift = {
        "version": 1,
        "rows": {"real": 569, "synthetic": 357},
        "min_category_rows": 5,
        "columns_lost": [],
        "columns_invented": ["note"],
        "categories": [
            {
                "column": "target",
                "category": "malignant",
                "status": "lost",
                "real_share": 212 / 569,
                "synthetic_share": 0.0,
            }
        ],
        "ranges": [
            {"column": "mean radius", "low": 16.64, "high": None, "real_share": 0.2, "synthetic_share": 0.0}
        ],
        "outside": [{"column": "mean smoothness", "below": 0.02, "above": 0.0}],
    }
    return render_report(make_document(), report, **kwargs)


@pytest.fixture(scope="module")
def with_previews() -> str:
    return page(previews=make_previews())


def test_galleries_render_every_section_with_inline_thumbnails(with_previews: str) -> None:
    parsed = outline(with_previews)
    for section in (
        "galleries",
        "gallery-copies",
        "gallery-outside",
        "gallery-missing",
        "gallery-duplicates",
        "columns",
        "modes",
    ):
        assert section in parsed.ids, section
    copies = parsed.inside["gallery-copies"]
    assert copies["div.pair"] == 2 and copies["img.thumb"] == 2  # real 4's tampered preview is not an image
    assert copies["blockquote.preview-text"] == 1
    assert parsed.inside["gallery-outside"]["figure.sample"] == 1
    assert parsed.inside["gallery-missing"]["img.thumb"] == 2  # real 22's data would break the attribute
    assert parsed.inside["gallery-duplicates"]["img.thumb"] == 2
    assert parsed.inside["modes"]["li.mode-card"] == N_MODES
    # Every image is inline: 7 gallery thumbnails and one per mode.
    sources = [attrs["src"] for tag, attrs in parsed.attrs if tag == "img"]
    assert len(sources) == 7 + N_MODES and all(s.startswith("data:image/webp;base64,") for s in sources)
    assert len(IMG_SRC.findall(with_previews)) == len(sources)
    lowered = with_previews.lower()
    assert "http://" not in lowered and "https://" not in lowered and "url(" not in lowered
    assert not re.search(r"\b(href|srcset|action|xlink:href)\s*=", lowered)
    assert "img-src data:" in with_previews  # the CSP allows inline images and nothing else


def test_stored_strings_are_escaped(with_previews: str) -> None:
    assert MALICIOUS not in with_previews and "<script" not in with_previews.lower()
    assert 'onerror="' not in with_previews
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and more" in with_previews  # the text preview, quoted


def test_copies_read_against_tau_and_the_holdout(with_previews: str) -> None:
    assert "distance 0 (0 τ)" in with_previews and "near-copy" in with_previews
    assert "0.0% of holdout samples come closer" in with_previews
    assert "25.0% of holdout samples come closer" in with_previews
    assert (
        "τ = 0.5000" in with_previews
        and "median 2.000" in with_previews
        and "5th percentile 1.250" in with_previews
    )


def test_modes_are_labelled_by_what_they_are(with_previews: str) -> None:
    bars = with_previews[with_previews.index('id="modes"') :]
    assert ">class-0</text>" in bars or ">class-0<" in bars  # the x labels: majority labels, not k-means ids
    assert "#3 “class-3”" in bars
    assert "mode #3 · mostly “class-3” (87.5%)" in with_previews  # and in the missing gallery


def test_columns_name_what_the_synthetic_table_lost(with_previews: str) -> None:
    columns = with_previews[with_previews.index('id="columns"') :]
    assert "<code>target</code> = malignant" in columns and "37.3%" in columns and "badge-fail" in columns
    assert "<code>mean radius</code> ≥ 16.64" in columns
    assert "<code>note</code>" in columns and "<code>mean smoothness</code>" in columns


@pytest.mark.parametrize(
    ("kwargs", "note"),
    [
        ({"previews": make_previews(), "previews_off": pv.OPERATOR_OFF}, pv.OPERATOR_OFF),
        ({}, "samples are shown by key"),
    ],
)
def test_withheld_previews_leave_the_galleries_by_key(kwargs: dict[str, Any], note: str) -> None:
    withheld = page(**kwargs)
    parsed = outline(withheld)
    assert "gallery-copies" in parsed.ids
    assert "<img" not in withheld and "data:image" not in withheld and 'class="preview-text"' not in withheld
    assert 'class="mode-card"' not in withheld  # the mode strip is made of previews
    assert note in withheld and "synthetic/0007.png" in withheld


def test_no_galleries_without_gallery_data() -> None:
    plain = render_report(make_document(), make_report_data())
    assert 'id="galleries"' not in plain and 'id="columns"' not in plain
