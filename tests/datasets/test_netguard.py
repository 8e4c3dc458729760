"""Remote ``http(s)`` datasets come from public addresses only, unless the operator allows a host or network.

Everything runs against real HTTP servers on loopback addresses (refused by default, which is the point);
only the DNS-rebinding test fakes the system resolver, to make one name answer differently twice.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers.audits import record_queued_audit
from helpers.http_servers import HttpServer, Reply
from pydantic import ValidationError

from auditor.config import Settings
from auditor.datasets.netguard import HostPolicy, address_refusal, check_url_host, find_host_refusal
from auditor.datasets.options import DatasetLimits
from auditor.datasets.refs import resolve_dataset
from auditor.datasets.uri import remote_filesystem
from auditor.db import access, queries
from auditor.errors import DatasetFormatError, HostNotAllowedError
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.pipeline.stages import resolve_reference
from auditor.service import execution
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher


def npy_bytes(rows: int = 40, dim: int = 4, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32))
    return buffer.getvalue()


def allowing(*entries: str) -> DatasetLimits:
    return DatasetLimits(remote_hosts=HostPolicy.parse(entries))


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer({"/emb.npy": Reply(body=npy_bytes())}) as running:
        yield running


# -- which addresses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # shared address space (carrier-grade NAT)
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("fc00::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_names_networks_and_addresses() -> None:
    policy = HostPolicy.parse(["MinIO.Internal.", "10.0.0.0/8", "127.0.0.1", "[::1]", " "])
    assert policy.hosts == frozenset({"minio.internal"})
    assert policy.refusal("minio.internal", ipaddress.ip_address("192.168.7.7")) is None, "a name allows all"
    assert policy.refusal("anything", ipaddress.ip_address("10.200.0.1")) is None
    assert policy.refusal("anything", ipaddress.ip_address("::ffff:10.200.0.1")) is None
    assert policy.refusal("anything", ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal("anything", ipaddress.ip_address("::1")) is None
    for bad in ["10.0.0.0/33", "minio.internal:9000", "http://x", "a b"]:
        with pytest.raises(ValueError, match="AUDITOR_REMOTE_ALLOW_HOSTS"):
            HostPolicy.parse([bad])
    with pytest.raises(ValidationError, match="AUDITOR_REMOTE_ALLOW_HOSTS"):
        Settings(remote_allow_hosts="10.0.0.0/8,999.1.1.1/8")
    assert Settings(remote_allow_hosts="minio.internal, 10.0.0.0/8").remote_allow_host_list() == [
        "minio.internal",
        "10.0.0.0/8",
    ]


# -- the fetch path ------------------------------------------------------------------------------------------


def test_a_loopback_server_is_refused_by_default_and_read_once_allowed(
    server: HttpServer, tmp_path: Path
) -> None:
    url = f"{server.url}/emb.npy"
    with pytest.raises(HostNotAllowedError, match=r"loopback address.*AUDITOR_REMOTE_ALLOW_HOSTS") as caught:
        resolve_dataset(url, allowed_schemes={"http"}, download_dir=tmp_path / "dl")
    assert (caught.value.code, caught.value.http_status, caught.value.exit_code) == (
        "host_not_allowed",
        403,
        2,
    )
    assert caught.value.details["reason"] == "loopback"
    assert server.requests == [], "refused before any request"
    resolved = resolve_dataset(
        url, allowed_schemes={"http"}, download_dir=tmp_path / "dl", limits=allowing("127.0.0.1")
    )
    assert resolved.n_total == 40 and server.paths("GET") == ["/emb.npy"]


def test_the_allow_list_comes_from_the_settings(
    server: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = DatasetRef(uri=f"{server.url}/emb.npy")
    monkeypatch.setenv("AUDITOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUDITOR_REMOTE_SCHEMES", "http")
    with pytest.raises(HostNotAllowedError):
        resolve_reference(ref)
    monkeypatch.setenv("AUDITOR_REMOTE_ALLOW_HOSTS", "10.0.0.0/8")
    with pytest.raises(HostNotAllowedError):
        resolve_reference(ref)
    monkeypatch.setenv("AUDITOR_REMOTE_ALLOW_HOSTS", "10.0.0.0/8,127.0.0.0/8")
    assert resolve_reference(ref).n_total == 40
    assert (
        resolve_reference(
            ref, Settings(home=tmp_path / "h2", remote_schemes="http", remote_allow_hosts="127.0.0.1")
        ).n_total
        == 40
    )


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "2130706433",  # decimal
        "017700000001",  # octal
        "0x7f000001",  # hex
        "0x7f.1",
        "127.1",
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
        "[::1]",
    ],
)
def test_other_spellings_of_loopback_are_refused(server: HttpServer, host: str, tmp_path: Path) -> None:
    url = f"http://{host}:{server.port}/emb.npy"
    with pytest.raises(HostNotAllowedError, match="loopback"):
        resolve_dataset(url, allowed_schemes={"http"}, download_dir=tmp_path / "dl")
    with pytest.raises(HostNotAllowedError):
        check_url_host(url, HostPolicy.parse(["10.0.0.0/8"]))
    assert server.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f.1", "[::ffff:127.0.0.1]"])
def test_the_http_client_itself_refuses_internal_addresses(server: HttpServer, host: str) -> None:
    """The enforcement is in the client's connector, not only in the check before it: a caller of the
    filesystem that skips :func:`check_url_host` is refused too (IP literals by the socket factory,
    names by the resolver)."""
    fs = remote_filesystem("http")
    with pytest.raises(Exception) as caught:  # fsspec may wrap it (FileNotFoundError)
        fs.cat_file(f"http://{host}:{server.port}/emb.npy")
    assert find_host_refusal(caught.value) is not None, f"{type(caught.value).__name__}: {caught.value}"
    assert server.requests == []
    assert (
        len(remote_filesystem("http", HostPolicy.parse(["127.0.0.1"])).cat_file(f"{server.url}/emb.npy"))
        > 100
    )


def test_a_redirect_to_an_internal_address_is_refused(tmp_path: Path) -> None:
    """Redirects are followed, and each hop's address is vetted: the allowed 127.0.0.1 redirects to
    127.0.0.2 (loopback too, not allowed), which never sees a request."""
    with HttpServer({"/secret.npy": Reply(body=npy_bytes(seed=1))}, host="127.0.0.2") as internal:
        target = f"{internal.url}/secret.npy"
        routes = {"/emb.npy": Reply(status=302, headers={"Location": target})}
        with HttpServer(routes) as front:
            url = f"{front.url}/emb.npy"
            with pytest.raises(HostNotAllowedError, match=r"127\.0\.0\.2.*loopback") as caught:
                resolve_dataset(
                    url, allowed_schemes={"http"}, download_dir=tmp_path / "dl", limits=allowing("127.0.0.1")
                )
            assert caught.value.code == "host_not_allowed" and url in caught.value.message
            assert front.requests and internal.requests == [], "the redirect target was never contacted"
            assert not list((tmp_path / "dl").rglob("*.npy*")), "nothing left behind"
            resolved = resolve_dataset(
                url,
                allowed_schemes={"http"},
                download_dir=tmp_path / "dl",
                limits=allowing("127.0.0.1", "127.0.0.2"),
            )
            assert resolved.n_total == 40 and internal.paths("GET") == ["/secret.npy"]


def test_dns_rebinding_cannot_swap_the_vetted_address(
    server: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rebind.test`` answers a public address to the first lookup (the check) and loopback to the
    next: the connection goes only to addresses vetted in the very lookup it uses, so it is refused and
    the loopback server never sees a request."""
    real_getaddrinfo = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers.append("93.184.216.34" if not answers else "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.test:{server.port}/emb.npy"
    check_url_host(url, HostPolicy())  # the first answer is public: the check alone would pass
    with pytest.raises(HostNotAllowedError, match=r"rebind\.test.*loopback"):
        resolve_dataset(url, allowed_schemes={"http"}, download_dir=tmp_path / "dl")
    assert answers[:2] == ["93.184.216.34", "127.0.0.1"] and server.requests == []


def test_one_internal_record_is_enough_to_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    def two_records(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_records)
    with pytest.raises(HostNotAllowedError, match="private"):
        check_url_host("https://mixed.test/data.npy", HostPolicy())
    check_url_host("https://mixed.test/data.npy", HostPolicy.parse(["mixed.test"]))


def test_braces_in_the_host_are_refused() -> None:
    with pytest.raises(DatasetFormatError, match="path only"):
        check_url_host("http://{a,b}.example.org/shard-{0..9}.tar", HostPolicy())


# -- the service: refused at submit, and again in the worker -------------------------------------------------


@pytest.fixture
def service_settings(migrated_database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=migrated_database_url,
        home=tmp_path / "home",
        data_roots=str(tmp_path),
        remote_schemes="http",
        max_member_bytes=1 << 20,
    )


def _api(settings: Settings) -> Any:
    from helpers.services import ApiServer

    from auditor.api import create_app

    context = ServiceContext.from_settings(settings, migrate=False)
    context.dispatcher = InProcessDispatcher(context)
    with context.session() as session:
        key = access.create_api_key(session, name="admin", is_admin=True).secret
    return context, ApiServer(create_app(context)), key


def test_the_api_refuses_an_internal_host_at_submit(service_settings: Settings, server: HttpServer) -> None:
    body = {
        "real": {"uri": f"{server.url}/emb.npy"},
        "synthetic": {"uri": f"{server.url}/emb.npy"},
        "params": {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0},
    }
    for settings, status, code in [
        (service_settings, 403, "host_not_allowed"),
        (service_settings.model_copy(update={"remote_allow_hosts": "127.0.0.1"}), 202, None),
    ]:
        context, api, key = _api(settings)
        try:
            with api:
                response = httpx.post(
                    f"{api.url}/v1/audits", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                assert response.status_code == status, response.text
                if code is not None:
                    assert response.json()["error"]["code"] == code
                    assert "AUDITOR_REMOTE_ALLOW_HOSTS" in response.json()["error"]["message"]
                    assert server.requests == [], "the API resolved the name but fetched nothing"
                too_big = {
                    **body,
                    "real": {"uri": body["real"]["uri"], "options": {"max_member_bytes": 2 << 20}},
                }
                refused = httpx.post(
                    f"{api.url}/v1/audits", json=too_big, headers={"Authorization": f"Bearer {key}"}
                )
                assert refused.status_code == 422, refused.text  # the options are checked first
                assert refused.json()["error"]["code"] == "limit_exceeded"
        finally:
            context.dispatcher.close()
            context.engine.dispose()


def test_the_worker_refuses_an_internal_host_when_it_fetches(
    service_settings: Settings, server: HttpServer
) -> None:
    """An audit recorded without the API's check (or under another allow-list) fails in the ``start``
    stage with the same code, having fetched nothing."""
    context = ServiceContext.from_settings(service_settings, migrate=False)
    url = f"{server.url}/emb.npy"
    spec = AuditSpec.model_validate(
        {
            "project": "p",
            "real": {"uri": url},
            "synthetic": {"uri": url},
            "params": {"metrics": ["fid"], "bootstrap": 0, "spectral_bootstrap": 0},
        }
    )
    try:
        audit_id = record_queued_audit(context, spec)
        execution.start_audit(context, audit_id)
        with context.session() as session:
            audit = queries.get_audit(session, audit_id)
            assert (audit.state, audit.error_code) == ("failed", "host_not_allowed"), audit.error_message
        assert server.requests == []
    finally:
        context.engine.dispose()


@pytest.mark.parametrize("url", ["http://host.example:99999/x.npy", "http:///x.npy"])
def test_malformed_urls_are_a_format_error(url: str) -> None:
    with pytest.raises(DatasetFormatError, match=r"malformed URL|no host"):
        resolve_dataset(url, allowed_schemes={"http"})
