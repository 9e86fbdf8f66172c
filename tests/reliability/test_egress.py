"""The SSRF guard (reliability/egress.py): which addresses are public and the URL check before a
call (the connection's own address checked at connect time: tests/reliability/test_http.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reliability import egress


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("10.0.0.5", False),
        ("172.16.3.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("192.0.2.10", False),  # documentation
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped: judged as 127.0.0.1
        ("::ffff:93.184.215.14", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert egress.address_is_public(address) is public


def _resolver(*addresses: str) -> egress.Resolver:
    return lambda host, port: list(addresses)


def _refused(url: str, **policy: Any) -> str:
    with pytest.raises(egress.UnsafeUrl) as raised:
        egress.url_check(url, **{"allow_http": False, "allow_private": False, **policy})
    return raised.value.message


def test_https_is_required_unless_http_is_allowed() -> None:
    public = _resolver("93.184.215.14")
    assert "must start with https://" in _refused("http://pms.example.com/h", resolver=public)
    assert "https:// or http://" in _refused("ftp://pms.example.com/h", allow_http=True, resolver=public)
    assert "no host" in _refused("https:///h")
    egress.url_check("https://pms.example.com/h", allow_http=False, allow_private=False, resolver=public)
    egress.url_check("http://pms.example.com/h", allow_http=True, allow_private=False, resolver=public)


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://internal.example.com/h", ("10.1.2.3",)),
        ("https://mixed.example.com/h", ("93.184.215.14", "127.0.0.1")),  # one private is enough
        ("https://nothing.example.com/h", ()),
    ],
)
def test_a_host_resolving_to_a_private_address_is_refused(url: str, addresses: tuple[str, ...]) -> None:
    assert "not a public address" in _refused(url, resolver=_resolver(*addresses))


def test_ip_literals_and_localhost_are_resolved_and_refused_without_dns_tricks() -> None:
    assert "127.0.0.1" in _refused("https://127.0.0.1:8443/h")
    assert "169.254.169.254" in _refused("https://169.254.169.254/latest/meta-data/")
    assert "not a public address" in _refused("https://[::1]/h")
    assert "not a public address" in _refused("https://localhost/h")


def test_a_host_that_does_not_resolve_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    assert "does not resolve" in _refused("https://no-such-host.invalid/h", resolver=fails)


def test_allowing_private_hosts_asks_no_dns() -> None:
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved")

    egress.url_check("https://10.0.0.5/h", allow_http=False, allow_private=True, resolver=never)
