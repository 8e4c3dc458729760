"""The interactive documentation works offline: /docs and /redoc load only assets the package ships (they
pulled Swagger UI and ReDoc from a CDN: a blank page without internet), and / is a landing page."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

import auditor.api

STATIC = Path(auditor.api.__file__).resolve().parent / "static"
REPO = Path(__file__).resolve().parents[2]


def referenced_urls(html: str) -> list[str]:
    return re.findall(
        r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']|spec-url=["']([^"']+)["']""", html
    )


def urls_in(html: str) -> list[str]:
    return [next(group for group in match if group) for match in referenced_urls(html)]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        (
            "/docs",
            {
                "/static/swagger-ui/swagger-ui-bundle.js": "text/javascript",
                "/static/swagger-ui/swagger-ui.css": "text/css",
                "/static/swagger-ui/favicon-32x32.png": "image/png",
            },
        ),
        ("/redoc", {"/static/redoc/redoc.standalone.js": "text/javascript"}),
    ],
)
def test_the_documentation_loads_only_local_assets(service, page: str, assets: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{service.url}{page}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn." not in html and "fonts.googleapis" not in html and "tiangolo.com" not in html
    urls = urls_in(html)
    assert urls, html
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
    assert set(assets) <= set(urls), urls
    assert "/openapi.json" in html
    for asset, content_type in assets.items():
        served = httpx.get(f"{service.url}{asset}")
        assert served.status_code == 200, asset
        assert served.headers["content-type"].split(";")[0] == content_type, served.headers
        assert served.content == (STATIC / asset.removeprefix("/static/")).read_bytes()
    openapi = httpx.get(f"{service.url}/openapi.json")
    assert openapi.status_code == 200 and openapi.json()["info"]["title"]


def test_missing_assets_are_404_and_the_static_files_are_read_only(service) -> None:  # type: ignore[no-untyped-def]
    missing = httpx.get(f"{service.url}/static/swagger-ui/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    escape = httpx.get(f"{service.url}/static/../app.py")
    assert escape.status_code == 404
    posted = httpx.post(f"{service.url}/static/redoc/redoc.standalone.js")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"


def test_the_landing_page_says_what_this_is_and_where_to_go(service) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{service.url}/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "Synthetic data auditor" in html and auditor.__version__ in html
    for link in ("/docs", "/redoc", "/openapi.json", "/healthz", "/readyz"):
        assert f'href="{link}"' in html
        assert httpx.get(f"{service.url}{link}").status_code in (200, 503)  # readyz may be not_ready
    assert "auditor submit" in html and "auditor gate" in html
    assert all(url.startswith("/") for url in urls_in(html))


def test_the_assets_ship_in_the_package_with_their_licences() -> None:
    """The wheel carries them: each is matched by a package-data pattern of pyproject.toml."""
    shipped = [
        "swagger-ui/swagger-ui-bundle.js",
        "swagger-ui/swagger-ui.css",
        "swagger-ui/favicon-32x32.png",
        "swagger-ui/LICENSE",
        "swagger-ui/NOTICE",
        "swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
        "redoc/redoc.standalone.js",
        "redoc/LICENSE",
        "redoc/redoc.standalone.js.LICENSE.txt",
    ]
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("auditor.api", [])
    for name in shipped:
        assert (STATIC / name).is_file(), name
        assert any(fnmatch(f"static/{name}", pattern) for pattern in patterns), (name, patterns)
    assert "Apache License" in (STATIC / "swagger-ui/LICENSE").read_text()
    assert "MIT License" in (STATIC / "redoc/LICENSE").read_text()
