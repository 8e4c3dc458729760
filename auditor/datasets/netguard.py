"""Which hosts a remote ``http(s)://`` dataset may be fetched from: public addresses only, unless allowed.

A dataset URL comes from the caller, and the server fetching it sits inside a network the caller cannot
reach (server-side request forgery). So every connection the HTTP client makes is vetted: the address it
connects to must be public, or explicitly allowed by the operator (``AUDITOR_REMOTE_ALLOW_HOSTS``: host
names and CIDR networks, e.g. ``minio.internal,10.0.0.0/8``). Refused: loopback, private (RFC 1918,
shared 100.64/10), link-local (169.254/16 with the cloud metadata service, fe80::/10), unique-local
(fc00::/7), site-local, multicast, reserved and unspecified addresses, IPv4 and IPv6, including IPv4
addresses embedded in IPv6 ones (IPv4-mapped ``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4
``2002::/16``, Teredo). Numeric spellings (``http://2130706433/``, ``http://0x7f.1/``, ``127.1``) are
normalised by the system resolver before the check, so they are refused like ``127.0.0.1``.

Where the check lives, and why it resists DNS rebinding and redirects:

* :func:`check_url_host` resolves the URL's host and refuses it before anything is fetched: a clear
  ``host_not_allowed`` (403) at submit time and at the start of resolution. It is advisory: a second
  lookup could answer differently.
* The enforcement is inside the HTTP client (:func:`guarded_client`, the ``get_client`` of fsspec's
  ``HTTPFileSystem``): a resolver that looks the name up once, vets every address and hands aiohttp only
  those, so the address connected to is the very address that was checked (no second lookup in
  between: rebinding has nothing to race); and a socket factory that vets the address of every socket
  opened, which also covers IP-literal URLs (aiohttp does not resolve those). Redirects are followed
  (aiohttp's default, at most 10 hops), and since every hop opens its connection through the same
  connector, a redirect to an internal address is refused the same way. Directory listings (image
  folders over HTTP) fetch their links through it too.
* ``s3://`` and ``gs://`` are not vetted here: their endpoint (AWS's and Google's, or
  ``AWS_ENDPOINT_URL`` for MinIO / an emulator) is operator configuration; the caller picks only the
  bucket and key.

Proxies are not used (``trust_env=False``): a proxy would make the connection on our behalf, unchecked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from auditor.errors import DatasetFormatError, DatasetNotFoundError, HostNotAllowedError

if TYPE_CHECKING:
    import aiohttp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "AUDITOR_REMOTE_ALLOW_HOSTS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: the last 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use translation, to anywhere
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be connected to (``"loopback"``, ``"private"``, ...), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = address_refusal(embedded)
            if reason is not None:
                return reason
            if address.ipv4_mapped is not None or address in _NAT64:
                return None  # a public IPv4 address, reached through IPv6
        if address in _NAT64_LOCAL:
            return "reserved"
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
    ]
    if isinstance(address, ipaddress.IPv6Address):
        checks += [(address.is_site_local, "site-local"), (address in _UNIQUE_LOCAL, "unique-local")]
    else:
        checks.append((address in _SHARED, "private"))
    checks += [(address.is_private, "private"), (address.is_reserved, "reserved")]
    reason = next((why for refused, why in checks if refused), None)
    if reason is None and not address.is_global:
        reason = "not globally routable"
    return reason


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def parse_address(text: str) -> IPAddress | None:
    """An IP address from a resolver's or a URL's text (brackets and an IPv6 zone allowed), or None."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class HostPolicy:
    """Hosts and networks allowed although internal (the operator's ``AUDITOR_REMOTE_ALLOW_HOSTS``).

    An allowed host name allows whatever it resolves to; an allowed network (or single address) allows
    the addresses inside it, whatever name led there. Public addresses are always allowed.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostPolicy:
        """From entries like ``minio.internal``, ``10.0.0.0/8``, ``127.0.0.1``; ValueError on a bad one."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = _normalise_host(raw)
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ValueError(f"{ALLOW_SETTING}: {raw!r} is not a CIDR network ({exc})") from exc
                continue
            address = parse_address(entry)
            if address is not None:
                networks.append(ipaddress.ip_network(address))
            elif all(
                part and (part.replace("-", "").replace("_", "").isalnum()) for part in entry.split(".")
            ):
                hosts.add(entry)
            else:
                raise ValueError(f"{ALLOW_SETTING}: {raw!r} is neither a host name, an address nor a network")
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _normalise_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` is public or inside an allowed network (IPv4-mapped forms included)."""
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if any(candidate in network for candidate in candidates for network in self.networks):
            return True
        return address_refusal(address) is None

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to ``address`` (which ``host`` led to) is refused, or None when it is allowed."""
        if self.allows_host(host) or self.allows_address(address):
            return None
        return address_refusal(address) or "not allowed"


def _refused(host: str, reason: str, url: str | None = None) -> HostNotAllowedError:
    where = f"{url}: host {host!r}" if url else f"host {host!r}"
    return HostNotAllowedError(
        f"{where} is or resolves to a {reason} address; remote datasets are fetched from public "
        f"addresses only (an operator can allow internal hosts and networks with {ALLOW_SETTING})",
        details={"uri": url or host, "host": host, "reason": reason, "setting": ALLOW_SETTING},
    )


def lookup(host: str, port: int) -> list[tuple[int, int, int, str]]:
    """``(family, type, proto, address)`` for each address ``host`` resolves to (one system lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, kind, proto, str(sockaddr[0])) for family, kind, proto, _, sockaddr in infos]


def url_host(url: str) -> tuple[str, int]:
    """The host and port of an ``http(s)`` URL; a :class:`DatasetFormatError` for a malformed one."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # "[" without "]", a port that is not a number or out of range
        raise DatasetFormatError(f"{url}: malformed URL ({exc})", details={"uri": url}) from exc
    if not host:
        raise DatasetFormatError(f"{url}: the URL has no host", details={"uri": url})
    if "{" in parts.netloc or "}" in parts.netloc:
        raise DatasetFormatError(
            f"{url}: brace patterns are expanded in the path only, not in the host", details={"uri": url}
        )
    return host, port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def check_url_host(url: str, policy: HostPolicy) -> None:
    """Refuse (``host_not_allowed``) a URL whose host is, or resolves to, an address ``policy`` refuses.

    Every address the name resolves to must be allowed: one internal record is enough to refuse. An
    unresolvable host is ``dataset_not_found``. This check is advisory (see the module docstring): the
    HTTP client vets the addresses it actually connects to.
    """
    host, port = url_host(url)
    if policy.allows_host(host):
        return
    try:
        addresses = [address for *_, address in lookup(host, port)]
    except (OSError, UnicodeError) as exc:
        raise DatasetNotFoundError(
            f"{url}: cannot resolve host {host!r} ({exc})", details={"uri": url, "host": host}
        ) from exc
    for text in addresses:
        address = parse_address(text)
        reason = "unparseable" if address is None else policy.refusal(host, address)
        if reason is not None:
            raise _refused(host, reason, url)


def find_host_refusal(exc: BaseException) -> HostNotAllowedError | None:
    """The :class:`HostNotAllowedError` that ``exc`` was raised from (fsspec wraps what the client raises,
    e.g. into ``FileNotFoundError``), or None."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, HostNotAllowedError):
            return current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


# -- the HTTP client ----------------------------------------------------------------------------------------


class _Guard:
    """What one client session's resolver and socket factory share: the policy, and the addresses the
    resolver vetted for an allowed host name (which the socket factory then accepts)."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.vetted_by_name: set[str] = set()

    def vet(self, host: str, text: str) -> None:
        address = parse_address(text)
        if address is None:
            raise _refused(host, "unparseable")
        reason = self.policy.refusal(host, address)
        if reason is not None:
            raise _refused(host, reason)
        if not self.policy.allows_address(address):
            self.vetted_by_name.add(str(address))

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """Every socket the client opens: the address must be vetted (a literal IP never met the resolver)."""
        family, kind, proto, _, sockaddr = addr_info
        address = parse_address(str(sockaddr[0]))
        if address is None or (
            str(address) not in self.vetted_by_name and not self.policy.allows_address(address)
        ):
            reason = "unparseable" if address is None else address_refusal(address) or "not allowed"
            raise _refused(str(sockaddr[0]), reason)
        return socket.socket(family=family, type=kind, proto=proto)


def _make_resolver(guard: _Guard) -> Any:
    import asyncio

    from aiohttp.abc import AbstractResolver, ResolveResult

    class VettingResolver(AbstractResolver):
        """One lookup per name; every address vetted; only vetted addresses handed to aiohttp."""

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            loop = asyncio.get_running_loop()
            infos = await loop.run_in_executor(None, lookup, host, port)
            results: list[ResolveResult] = []
            for found_family, _, proto, address in infos:
                guard.vet(host, address)
                if family not in (socket.AF_UNSPEC, found_family):
                    continue
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=address.split("%", 1)[0],
                        port=port,
                        family=found_family,
                        proto=proto,
                        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                    )
                )
            if not results:
                raise OSError(f"{host}: no address of the requested family")
            return results

        async def close(self) -> None:
            """Nothing to release."""

    return VettingResolver()


async def guarded_client(policy: HostPolicy, **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection is vetted against ``policy`` (fsspec's ``get_client``)."""
    import aiohttp

    guard = _Guard(policy)
    connector = aiohttp.TCPConnector(resolver=_make_resolver(guard), socket_factory=guard.socket_factory)
    kwargs.pop("connector", None)
    kwargs["trust_env"] = False
    return aiohttp.ClientSession(connector=connector, **kwargs)
