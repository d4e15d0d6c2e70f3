"""Callback targets (``computalot.callbacks.urls`` and ``send.resolve``) and signatures
(``computalot.callbacks.verify``): which URLs are refused at submit, which addresses at send time
under each policy, and that a signature verifies only with the right secret and the exact bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket

import pytest

from computalot import verify_callback_signature
from computalot.callbacks.send import post_once, resolve
from computalot.callbacks.urls import (
    CallbackRefused,
    Policy,
    address_class,
    check_callback_url,
    check_target,
    parse_target,
    policy_of,
)
from computalot.callbacks.verify import sign_body
from computalot.errors import ValidationFailed
from computalot.settings import load_settings

STRICT = Policy()
PRIVATE_OK = Policy(allow_private=True)

#: address -> its class: never (refused whatever the operator allows), private, public.
ADDRESSES = {
    "127.0.0.1": "private",
    "127.255.255.254": "private",
    "10.0.0.5": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "private",
    "100.127.255.255": "private",
    "169.254.169.254": "never",
    "169.254.0.1": "never",
    "0.0.0.0": "never",
    "0.1.2.3": "never",
    "224.0.0.1": "never",
    "239.255.255.250": "never",
    "240.0.0.1": "never",
    "255.255.255.255": "never",
    "8.8.8.8": "public",
    "1.1.1.1": "public",
    "172.32.0.1": "public",
    "100.128.0.1": "public",
    "::1": "private",
    "::": "never",
    "fe80::1": "never",
    "febf::1": "never",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "never",
    "::ffff:127.0.0.1": "private",
    "::ffff:169.254.169.254": "never",
    "::ffff:10.1.2.3": "private",
    "::ffff:8.8.8.8": "public",
    "64:ff9b::7f00:1": "private",
    "64:ff9b::a9fe:a9fe": "never",
    "2002:7f00:1::": "private",
    "::7f00:1": "never",
    "2606:4700:4700::1111": "public",
    "2001:4860:4860::8888": "public",
}


@pytest.mark.parametrize(("address", "kind"), sorted(ADDRESSES.items()))
def test_address_classes(address: str, kind: str) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(("address", "kind"), sorted(ADDRESSES.items()))
def test_literal_targets_under_each_policy(address: str, kind: str) -> None:
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:8080/hook"
    if kind == "public":
        assert check_target(url, STRICT).literal == ipaddress.ip_address(address)
        return
    with pytest.raises(CallbackRefused):
        check_target(url, STRICT)
    if kind == "never":
        with pytest.raises(CallbackRefused):
            check_target(url, PRIVATE_OK)
        with pytest.raises(CallbackRefused):  # no allow-list reaches a never address
            check_target(url, policy_of(False, ["0.0.0.0/0", "::/0"]))
    else:
        check_target(url, PRIVATE_OK)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://127.0.0.1./",
        "http://0/",
    ],
)
def test_shorthand_ipv4_forms_are_read_as_the_address_they_spell(url: str) -> None:
    with pytest.raises(CallbackRefused, match="address"):
        check_target(url, STRICT)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://x/", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("//example.com/hook", "scheme"),
        ("http://user:pw@example.com/", "password"),
        ("http://user@example.com/", "password"),
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/\r\nX: y", "control"),
        ("http:///path", "host"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "port"),
        ("http://exa_mple.com/", "not valid"),
        ("http://example.com/#frag", "fragment"),
        ("http://example.com/" + "a" * 2048, "2048"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ],
)
def test_malformed_or_never_allowed_urls(url: str, why: str) -> None:
    for policy in (STRICT, PRIVATE_OK):
        with pytest.raises(CallbackRefused, match=why):
            check_target(url, policy)


@pytest.mark.parametrize(
    "name",
    ["localhost", "LOCALHOST.", "api.localhost", "printer.local", "db.internal", "ip6-localhost"],
)
def test_obvious_local_names_are_refused_at_submit_unless_private_is_allowed(name: str) -> None:
    with pytest.raises(CallbackRefused, match="local"):
        check_target(f"http://{name}:9000/", STRICT)
    assert check_target(f"http://{name}:9000/", PRIVATE_OK).host == name.lower().rstrip(".")


def test_a_public_url_parses_into_what_the_sender_uses() -> None:
    target = parse_target("HTTPS://Hooks.Example.COM/a/b?x=1&y=2")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "hooks.example.com",
        443,
        "/a/b?x=1&y=2",
    )
    assert target.host_header == "hooks.example.com"
    assert parse_target("http://[2606:4700::1]:8080").host_header == "[2606:4700::1]:8080"
    assert parse_target("http://bücher.example/").host == "xn--bcher-kva.example"


def test_an_allow_list_admits_only_its_networks() -> None:
    policy = policy_of(False, ["127.0.0.2/32", "fd00::/8"])
    check_target("http://127.0.0.2:1234/", policy)
    check_target("http://[fd00::5]/", policy)
    for refused in ("http://127.0.0.1/", "http://10.0.0.5/", "http://[::1]/", "http://localhost/"):
        with pytest.raises(CallbackRefused):
            check_target(refused, policy)


def test_submit_check_is_a_422_naming_callback_url_with_an_action() -> None:
    check_callback_url(None, STRICT)
    check_callback_url("https://hooks.example.com/x", STRICT)
    with pytest.raises(ValidationFailed) as caught:
        check_callback_url("http://10.0.0.5/", STRICT)
    body = caught.value.to_dict()["error"]
    assert body["code"] == "validation_error"
    assert body["details"] == [
        {"loc": ["callback_url"], "msg": "10.0.0.5 is a private or loopback address"}
    ]
    assert "public http(s) URL" in body["recommended_action"]


def _hosts_names_for_loopback() -> list[str]:
    """Names from /etc/hosts (this machine's own name among them) that resolve to loopback."""
    names = ["localhost", socket.gethostname()]
    found = []
    for name in names:
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if any(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos):
            found.append(name)
    return found


def test_send_time_resolution_refuses_a_name_that_resolves_to_loopback() -> None:
    names = _hosts_names_for_loopback()
    assert "localhost" in names
    for name in names:
        # A name that is not an obvious local one passes the submit check …
        target = check_target(f"http://{name}:9/", PRIVATE_OK)
        # … and is refused once resolved, under the strict policy.
        with pytest.raises(CallbackRefused, match="resolves to"):
            asyncio.run(resolve(target, STRICT))
        assert asyncio.run(resolve(target, PRIVATE_OK)).is_loopback
    outcome = asyncio.run(post_once("http://localhost:9/", STRICT, b"{}", {}, 2.0))
    assert outcome.refused and not outcome.delivered and "local" in (outcome.error or "")


def test_a_name_that_does_not_resolve_is_a_retryable_failure() -> None:
    outcome = asyncio.run(post_once("http://no-such-host.invalid/", STRICT, b"{}", {}, 5.0))
    assert not outcome.refused and not outcome.delivered
    assert "name resolution failed" in (outcome.error or "")


def test_signature_verifies_only_with_the_secret_and_the_exact_bytes() -> None:
    secret = "s3cret-" + "ab" * 16
    body = b'{"id":"job_1","status":"completed"}'
    header = sign_body(secret, body)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"
    assert verify_callback_signature(secret, body, header)
    assert verify_callback_signature(secret, body.decode(), header)
    assert verify_callback_signature(secret, body, f"  {header} ")
    assert not verify_callback_signature("other", body, header)
    assert not verify_callback_signature(secret, body + b" ", header)
    assert not verify_callback_signature(secret, body, expected)  # prefix missing
    assert not verify_callback_signature(secret, body, header.upper())
    assert not verify_callback_signature(secret, body, None)
    assert not verify_callback_signature(secret, body, "")
    assert not verify_callback_signature("", body, header)
    assert not verify_callback_signature(secret, body, "sha256=é")


def test_settings_read_and_check_the_callback_variables() -> None:
    settings = load_settings(
        callback_retry_s="1, 2,4.5", callback_allow_networks=["127.0.0.2/32", "fd00::/8"]
    )
    assert settings.callback_retry_delays == (1.0, 2.0, 4.5)
    assert load_settings().callback_retry_delays == (10.0, 30.0, 90.0, 180.0, 300.0)
    assert sum(load_settings().callback_retry_delays) >= 600  # ~10 minutes, 6 tries
    from computalot.settings import ConfigError

    for bad in ({"callback_retry_s": "a,b"}, {"callback_retry_s": "0"}, {"callback_retry_s": ""}):
        with pytest.raises(ConfigError, match="CALLBACK_RETRY_S"):
            load_settings(**bad)
    with pytest.raises(ConfigError, match="CALLBACK_ALLOW_NETWORKS"):
        load_settings(callback_allow_networks=["not-a-net"])
