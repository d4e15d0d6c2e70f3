"""Which callback targets the platform may POST to (docs/llms-full.md, "Callbacks").

A callback is an HTTP request the platform makes on a user's behalf, so a careless target turns
it into a probe of the platform's own network (server-side request forgery). Targets are judged
twice:

* at submit (:func:`check_callback_url`), without DNS so the submit answers fast: the scheme,
  userinfo, length and port are checked, a literal IP address is judged at once, and obvious
  local names (``localhost``, ``*.localhost``, ``*.local``, ``*.internal`` …) are refused;
* at send time (``computalot.callbacks.resolve``), every address the name resolves to is
  judged the same way, and the request goes to the address that was checked.

Addresses fall in three classes (:func:`address_class`):

* ``never``: link-local (169.254/16, cloud metadata included; fe80::/10), unspecified, multicast,
  reserved and broadcast addresses. No deployment has a legitimate receiver there, so they are
  refused even when the operator allows private targets.
* ``private``: loopback, RFC 1918, CGNAT (100.64/10), unique-local (fc00::/7) and the other
  non-global ranges. Refused unless ``COMPUTALOT_CALLBACK_ALLOW_PRIVATE=true``, or the address
  lies in one of ``COMPUTALOT_CALLBACK_ALLOW_NETWORKS`` (a narrower allowance: one receiver's
  network rather than all of them).
* ``public``: everything else.

IPv4 addresses carried in IPv6 (``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4) are judged
by the IPv4 address they carry. Shorthand IPv4 forms that resolvers accept (``127.1``,
``2130706433``, ``0x7f.0.0.1``) are read as the address they spell.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from computalot.errors import ValidationFailed

if TYPE_CHECKING:
    from computalot.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddressClass = Literal["public", "private", "never"]

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
#: Names that always mean this machine or its local network: refused at submit without DNS.
LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"}
)
LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".home.arpa", ".lan")
#: Cloud metadata services by name: never a callback target, whatever the operator allows.
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
HOST_CHARS = re.compile(r"[a-z0-9.-]+")
SHORTHAND_V4 = re.compile(r"[0-9a-fx.]+")
ACTION = (
    "give a public http(s) URL of your own server (no user:password@, no private, loopback or "
    "link-local address); see 'Callbacks' in /llms-full.txt"
)


class CallbackRefused(ValueError):
    """A callback target the platform will not send to; the message says why."""


@dataclass(frozen=True)
class Policy:
    """What the operator allows beyond public addresses (``COMPUTALOT_CALLBACK_ALLOW_*``)."""

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    def allows_local_names(self) -> bool:
        return self.allow_private


@dataclass(frozen=True)
class Target:
    """A parsed callback URL: what the sender connects to and what it says it is."""

    scheme: str
    host: str  # lower-case, no trailing dot, IPv6 without brackets
    port: int
    path: str  # path and query, at least "/"
    literal: IPAddress | None  # the host when it is an IP address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to an IPv4 host (mapped, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_class(address: IPAddress) -> AddressClass:
    """``never``, ``private`` or ``public`` (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return "never"
        inner = embedded_v4(address)
        if inner is not None:
            return address_class(inner)
    if address.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return "private"
    if (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in THIS_NETWORK)
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        return "never"
    if address.is_private or not address.is_global:
        return "private"
    return "public"


def refusal(address: IPAddress, policy: Policy) -> str | None:
    """Why ``address`` may not be a callback target under ``policy``, or None when it may."""
    kind = address_class(address)
    if kind == "public":
        return None
    if kind == "never":
        return f"{address} is a link-local, unspecified, multicast or reserved address"
    if policy.allow_private or any(
        address.version == net.version and address in net for net in policy.allow_networks
    ):
        return None
    return f"{address} is a private or loopback address"


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` spells, shorthand IPv4 forms included; None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if SHORTHAND_V4.fullmatch(host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def parse_target(url: str) -> Target:
    """Read ``url`` into a :class:`Target`; raise :class:`CallbackRefused` for a URL that is
    not a plain absolute http(s) URL (whatever the address)."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"must be at most {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise CallbackRefused("must not contain spaces, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise CallbackRefused(f"scheme must be http or https, not {scheme or 'missing'!r}")
    if "@" in parts.netloc:
        raise CallbackRefused("must not carry a user name or password (user:password@)")
    if parts.fragment:
        raise CallbackRefused("must not carry a #fragment")
    raw_host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise CallbackRefused("has an invalid port") from None
    host = raw_host.rstrip(".")
    if not host:
        raise CallbackRefused("must name a host")
    literal = literal_address(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise CallbackRefused("has a host name that is not valid") from None
        if not HOST_CHARS.fullmatch(host) or ".." in host:
            raise CallbackRefused("has a host name that is not valid")
    else:
        host = str(literal)
    if port == 0:
        raise CallbackRefused("has an invalid port")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path, literal)


def check_target(url: str, policy: Policy) -> Target:
    """Everything that can be judged without DNS (see the module docstring)."""
    target = parse_target(url)
    if target.literal is not None:
        reason = refusal(target.literal, policy)
        if reason is not None:
            raise CallbackRefused(reason)
        return target
    name = target.host
    if name in METADATA_NAMES:
        raise CallbackRefused(f"{name!r} is a cloud metadata service")
    if not policy.allows_local_names() and (
        name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES) or name.startswith("localhost.")
    ):
        raise CallbackRefused(f"{name!r} names this machine or a local network")
    return target


def check_callback_url(url: str | None, policy: Policy) -> None:
    """The submit-time check: a 422 naming ``callback_url`` when the target is refused."""
    if url is None:
        return
    try:
        check_target(url, policy)
    except CallbackRefused as exc:
        message = f"callback_url: {exc}"
        raise ValidationFailed(
            message,
            details=[{"loc": ["callback_url"], "msg": str(exc)}],
            recommended_action=ACTION,
        ) from None


def policy_of(allow_private: bool, allow_networks: Sequence[str]) -> Policy:
    """A :class:`Policy` from the settings' values (networks already validated there)."""
    nets = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
    return Policy(allow_private=allow_private, allow_networks=nets)


def callback_policy(settings: Settings | None) -> Policy:
    """The operator's policy (``COMPUTALOT_CALLBACK_ALLOW_*``); without settings, the strict one."""
    if settings is None:
        return Policy()
    return policy_of(settings.callback_allow_private, settings.callback_allow_networks)
