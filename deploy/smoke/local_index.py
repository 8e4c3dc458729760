"""Write a PEP 503 "simple" index for the wheels in DIR/files (deploy/smoke.sh serves it on 127.0.0.1).

Usage: ``python3 deploy/smoke/local_index.py DIR``
"""

from __future__ import annotations

import html
import pathlib
import re
import sys
import urllib.parse


def main(root: pathlib.Path) -> None:
    projects: dict[str, list[str]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, files in projects.items():
        page = root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{urllib.parse.quote(f)}">{html.escape(f)}</a>\n' for f in files
        )
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    print(f"{len(projects)} projects in {root / 'simple'}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
