"""Calls to URLs that someone other than the operator chose (a hotel's staff webhook): the guard
against server-side request forgery (SSRF), for any caller that names its policy.

Two checks, because DNS can change between them:

* :func:`url_check` before a URL is stored and again before each call: the scheme (https unless
  plain http is allowed) and every address the host resolves to (an IP literal: itself) must be
  public: not private, loopback, link-local, shared (100.64/10), multicast, reserved or unspecified
  (``ipaddress``'s ``is_global``; an IPv4-mapped IPv6 address is judged as its IPv4 address).
* :class:`PublicOnlyAdapter` at connect time: the address the socket actually connected to is
  checked again, so a name that resolved to a public address for the check and to 127.0.0.1 for
  the connection (DNS rebinding) is refused before a byte is sent. Through an egress proxy (the
  operator's ``HTTPS_PROXY``) the socket's peer is the proxy; the proxy then decides, after the
  check above.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from hotelbot.exceptions import ValidationFailed

Resolver = Callable[[str, int], list[str]]


class UnsafeUrl(ValidationFailed):
    """A URL the policy refuses (its message says why, for a form error or a log line)."""

    code = "unsafe_url"


def address_is_public(address: str) -> bool:
    """True for an address reachable on the public internet (``is_global``, not multicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (what a connection may use)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def url_check(url: str, *, allow_http: bool, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise :class:`UnsafeUrl` unless ``url`` is http(s) (https only unless ``allow_http``) and,
    unless ``allow_private``, every address its host resolves to is public."""
    parts = urllib.parse.urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrl(f"The URL must start with {' or '.join(f'{s}://' for s in schemes)}.")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("The URL has no host.")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = (resolver or resolve)(host, port)
    except (OSError, UnicodeError, ValueError) as e:
        raise UnsafeUrl(f"The host {host} does not resolve ({e}).") from e
    refused = [a for a in addresses if not address_is_public(a)]
    if refused or not addresses:
        raise UnsafeUrl(
            f"The host {host} resolves to {', '.join(refused) or 'no address'}: not a public address "
            "(private, loopback, link-local or reserved addresses are refused)."
        )


class _PublicPeer:
    """A connection that refuses a non-public peer right after connecting (before TLS or a byte)."""

    host: str

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = str(sock.getpeername()[0])
        if not address_is_public(peer):
            sock.close()
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"refused: {self.host} connected to {peer}, not a public address",
            )
        return sock


class _PublicHTTPConnection(_PublicPeer, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeer, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose direct connections reach public addresses only (see the module)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}
