"""The README's webhook verification snippet, executed as written there (so the tests check what users copy)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Callable[..., bool]:
    """The ``verify(secret, signature_header, body)`` of the README's "Verify an auditor webhook" block."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    snippet = next(block for block in blocks if block.startswith("# Verify an auditor webhook"))
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify
