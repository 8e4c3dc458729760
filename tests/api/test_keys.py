"""API keys: revocation takes effect at once where it happens and within about a second elsewhere; the
key `auditor serve` writes is private from its first byte."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from auditor.api.deps import REVOCATION_CHECK_S
from auditor.cli.service import _ensure_embedded_admin_key, write_private_file
from auditor.config import Settings
from auditor.db import access

AUDITOR = str(Path(sys.executable).parent / "auditor")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_revoked_through_the_api_is_refused_at_once(service) -> None:  # type: ignore[no-untyped-def]
    created = httpx.post(
        f"{service.url}/v1/keys", json={"name": "ci", "project": "alpha"}, headers=bearer(service.admin_key)
    )
    assert created.status_code == 201, created.text
    key, prefix = created.json()["key"], created.json()["prefix"]
    assert httpx.get(f"{service.url}/v1/audits", headers=bearer(key)).status_code == 200  # now cached

    revoked = httpx.delete(f"{service.url}/v1/keys/{prefix}", headers=bearer(service.admin_key))
    assert revoked.status_code == 204, revoked.text
    refused = httpx.get(f"{service.url}/v1/audits", headers=bearer(key))  # well inside the cache's TTL
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    # Idempotent; unknown prefixes are 404; only an admin revokes.
    assert (
        httpx.delete(f"{service.url}/v1/keys/{prefix}", headers=bearer(service.admin_key)).status_code == 204
    )
    missing = httpx.delete(f"{service.url}/v1/keys/sda_00000000", headers=bearer(service.admin_key))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    other = service.project_key("alpha")
    forbidden = httpx.delete(f"{service.url}/v1/keys/{prefix}", headers=bearer(other))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"


def test_a_key_revoked_by_another_process_is_refused_within_about_a_second(service) -> None:  # type: ignore[no-untyped-def]
    """`auditor keys revoke` (or another API process): only the database knows. The cache used to trust
    the key for its whole TTL (10 s)."""
    key = service.project_key("alpha")
    assert httpx.get(f"{service.url}/v1/audits", headers=bearer(key)).status_code == 200  # cached
    prefix = "_".join(key.split("_")[:2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update(
        AUDITOR_DATABASE_URL=str(service.context.settings.database_url), AUDITOR_HOME=str(service.home)
    )
    revoke = subprocess.run(
        [AUDITOR, "keys", "revoke", prefix], env=env, capture_output=True, text=True, timeout=120
    )
    assert revoke.returncode == 0 and f"key {prefix} revoked" in revoke.stderr, revoke
    revoked_at = time.monotonic()
    while httpx.get(f"{service.url}/v1/audits", headers=bearer(key)).status_code == 200:
        assert time.monotonic() - revoked_at < REVOCATION_CHECK_S + 1.5, "the revoked key still works"
        time.sleep(0.05)
    assert time.monotonic() - revoked_at < REVOCATION_CHECK_S + 1.5
    # The other keys keep working (and are checked again once, not refused).
    assert httpx.get(f"{service.url}/v1/audits", headers=bearer(service.admin_key)).status_code == 200


def test_a_key_verified_while_it_is_revoked_is_not_cached(service) -> None:  # type: ignore[no-untyped-def]
    """A request that checked the key just before a revocation must not put it back in the cache."""
    from auditor.api.deps import PrincipalCache

    cache = PrincipalCache(ttl_s=60, revocation_check_s=60)
    key = service.project_key("alpha")
    real_authenticate = access.authenticate
    checked, proceed = threading.Event(), threading.Event()

    def slow_authenticate(session, secret):  # type: ignore[no-untyped-def]
        principal = real_authenticate(session, secret)
        checked.set()
        proceed.wait(5)
        return principal

    results = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(access, "authenticate", slow_authenticate)
        worker = threading.Thread(target=lambda: results.append(cache.get(key, service.context)))
        worker.start()
        assert checked.wait(5)
        cache.clear()  # the revocation happened meanwhile (this process revoked it)
        proceed.set()
        worker.join(5)
    assert results and results[0].project == "alpha"  # that request was already past the check
    assert cache.lookup(key) is None  # but the key was not cached
    cache.get(key, service.context)  # without a revocation in between, it is
    assert cache.lookup(key) is not None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_admin_key_is_private_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was written with the umask's mode (0644: world-readable) and chmod-ed afterwards."""
    created: list[tuple[str, int]] = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & os.O_CREAT:
            created.append((str(path), mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    old_umask = os.umask(0o022)
    try:
        settings = Settings(
            home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'home' / 'auditor.db'}"
        )
        _ensure_embedded_admin_key(settings, Console(file=io.StringIO()))
        path = settings.api_key_file()
        assert _mode(path) == 0o600
        assert path.read_text().startswith("sda_")
        key_files = [mode for name, mode in created if Path(name).parent == path.parent and "api.key" in name]
        assert key_files == [0o600], created  # created 0600, never wider
        # Rewritten (the stored key no longer authenticates): still 0600, never 0644 in between.
        path.write_text("sda_stale_key\n")
        path.chmod(0o644)
        _ensure_embedded_admin_key(settings, Console(file=io.StringIO()))
        assert _mode(path) == 0o600 and path.read_text() != "sda_stale_key\n"
    finally:
        os.umask(old_umask)


def test_write_private_file_leaves_nothing_behind_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "api.key"

    def failing_replace(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_private_file(target, "secret\n")
    assert list(tmp_path.iterdir()) == []
