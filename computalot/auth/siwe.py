"""Sign-In with Ethereum (EIP-4361) messages, signed with ``personal_sign`` (EIP-191).

The server builds the message text for a wallet challenge, the wallet signs it, and
:func:`verify_signed_message` checks that the signature recovers to the claimed wallet and that
the signed fields (domain, chain, nonce, validity window) are the ones the server issued. This
module is pure: single use of a challenge and the wallet whitelist belong to the store layer.

Only the subset of EIP-4361 that :func:`build_message` emits is accepted by
:func:`parse_message`; anything else (extra or reordered fields, a missing expiration time) is
rejected, since the server never issues such a message and leniency would only widen the
surface an attacker can play with.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError as KeyValidationError

from computalot.errors import Unauthorized, field_error

CHAINS: dict[str, int] = {
    "base": 8453,
    "base-sepolia": 84532,
    "ethereum": 1,
    "sepolia": 11155111,
    "optimism": 10,
    "arbitrum": 42161,
    "polygon": 137,
}
"""Chain names a client may ask for, and the EIP-155 chain id each puts in the message."""

DEFAULT_STATEMENT = "Sign in to Computalot."
CLOCK_SKEW = timedelta(seconds=60)
"""How far in the future ``Issued At`` may lie, to tolerate clocks that disagree a little."""

_PREAMBLE = " wants you to sign in with your Ethereum account:"
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_SIG_RE = re.compile(r"(0x)?[0-9a-fA-F]{130}")
_NONCE_ALPHABET = string.ascii_letters + string.digits
_NONCE_LEN = 24  # ~143 bits; EIP-4361 asks for at least 8 alphanumerics
_FIELD_ORDER = ("URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time")

_MALFORMED = "malformed sign-in message"
_BAD_SIGNATURE = "invalid wallet signature"


@dataclass(frozen=True)
class SiweFields:
    """The fields of a parsed sign-in message; times are timezone-aware UTC."""

    domain: str
    address: str
    statement: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime


def normalize_address(addr: str) -> str:
    """The EIP-55 checksum form of a ``0x`` + 40 hex address, so one wallet has one spelling.

    Lowercase, uppercase and checksummed inputs all map to the same key; anything else is a 422
    on ``wallet_address``.
    """
    if not isinstance(addr, str) or not _ADDRESS_RE.fullmatch(addr.strip()):
        raise field_error(["wallet_address"], "expected 0x followed by 40 hex characters")
    return str(to_checksum_address(addr.strip()))


def chain_id(chain: str) -> int:
    """The chain id for a chain name from :data:`CHAINS`; a 422 on ``chain`` otherwise."""
    key = chain.strip().lower() if isinstance(chain, str) else ""
    if key not in CHAINS:
        raise field_error(
            ["chain"], f"unsupported chain {chain!r}; use one of {', '.join(sorted(CHAINS))}"
        )
    return CHAINS[key]


def new_nonce() -> str:
    """A fresh alphanumeric nonce (24 chars), unguessable so a signature cannot be pre-made."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(_NONCE_LEN))


def _iso(dt: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, whole seconds, as EIP-4361 timestamps are written."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("sign-in message times must be timezone-aware")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_message(
    *,
    domain: str,
    uri: str,
    address: str,
    chain: str,
    nonce: str,
    issued_at: datetime,
    expires_at: datetime,
    statement: str = DEFAULT_STATEMENT,
) -> str:
    """The exact EIP-4361 text the wallet is asked to sign.

    ``address`` is normalized to its checksum form (EIP-4361 requires it) and ``chain`` is a
    name from :data:`CHAINS`; both come from the client, so they fail as 422s. The remaining
    arguments come from server configuration, so a bad one is a programming error
    (``ValueError``).
    """
    checksummed = normalize_address(address)
    cid = chain_id(chain)
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"invalid sign-in domain {domain!r}")
    if not _URI_RE.fullmatch(uri):
        raise ValueError(f"invalid sign-in URI {uri!r}")
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be at least 8 alphanumeric characters")
    if not statement or "\n" in statement or "\r" in statement:
        raise ValueError("statement must be one non-empty line")
    issued, expires = _iso(issued_at), _iso(expires_at)  # rejects naive times first
    if expires_at <= issued_at:
        raise ValueError("expires_at must be after issued_at")
    return (
        f"{domain}{_PREAMBLE}\n"
        f"{checksummed}\n"
        "\n"
        f"{statement}\n"
        "\n"
        f"URI: {uri}\n"
        "Version: 1\n"
        f"Chain ID: {cid}\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {issued}\n"
        f"Expiration Time: {expires}"
    )


def _parse_time(value: str) -> datetime:
    if not _TIME_RE.fullmatch(value):
        raise Unauthorized(_MALFORMED)
    value = re.sub(r"\.(\d{6})\d+", r".\1", value)  # datetime keeps microseconds only
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise Unauthorized(_MALFORMED) from None


def parse_message(text: str) -> SiweFields:
    """Parse sign-in text of the shape :func:`build_message` emits; strictly.

    Raises ``Unauthorized("malformed sign-in message")`` on any deviation: wrong preamble, an
    address that is not checksummed, fields missing, extra or out of order, a bad number or time.
    """
    if not isinstance(text, str) or "\r" in text:
        raise Unauthorized(_MALFORMED)
    lines = text.split("\n")
    # Header (2) + blank + statement + blank + 6 fields. EIP-4361 allows omitting the
    # statement, but the server always writes one, so its absence is malformed here.
    if len(lines) != 11 or lines[2] != "" or not lines[3] or lines[4] != "":
        raise Unauthorized(_MALFORMED)
    if not lines[0].endswith(_PREAMBLE):
        raise Unauthorized(_MALFORMED)
    domain = lines[0][: -len(_PREAMBLE)]
    address = lines[1]
    statement = lines[3]
    if not _DOMAIN_RE.fullmatch(domain) or not _ADDRESS_RE.fullmatch(address):
        raise Unauthorized(_MALFORMED)
    if to_checksum_address(address) != address:
        raise Unauthorized(_MALFORMED)

    values: list[str] = []
    for line, name in zip(lines[5:], _FIELD_ORDER, strict=True):
        prefix = f"{name}: "
        if not line.startswith(prefix) or not line[len(prefix) :]:
            raise Unauthorized(_MALFORMED)
        values.append(line[len(prefix) :])
    uri, version, chain, nonce, issued, expires = values
    if not _URI_RE.fullmatch(uri) or version != "1" or not _NONCE_RE.fullmatch(nonce):
        raise Unauthorized(_MALFORMED)
    if not chain.isascii() or not chain.isdigit() or chain.startswith("0"):
        raise Unauthorized(_MALFORMED)
    return SiweFields(
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=int(chain),
        nonce=nonce,
        issued_at=_parse_time(issued),
        expiration_time=_parse_time(expires),
    )


def recover_signer(message: str, signature: str) -> str:
    """The checksummed address whose key produced the ``personal_sign`` ``signature``.

    Accepts 65-byte signatures as hex with or without ``0x`` (eth-account 0.14 and hexbytes 2
    print them without; wallets send them with). Anything unrecoverable is
    ``Unauthorized("invalid wallet signature")``.
    """
    if not isinstance(signature, str) or not _SIG_RE.fullmatch(signature.strip()):
        raise Unauthorized(_BAD_SIGNATURE)
    raw = bytes.fromhex(signature.strip().removeprefix("0x"))
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=raw)
    except (ValueError, TypeError, BadSignature, KeyValidationError):
        # eth-account/eth-keys raise any of these for a bad v, r or s; all mean the same here.
        raise Unauthorized(_BAD_SIGNATURE) from None
    return str(to_checksum_address(signer))


def verify_signed_message(
    *,
    message: str,
    signature: str,
    expected_address: str,
    expected_domain: str,
    expected_chain_id: int,
    expected_nonce: str,
    now: datetime,
) -> None:
    """Check a signed challenge; return ``None`` if valid, else raise ``Unauthorized``.

    The signature is checked first, so a message altered after signing fails as "not made by"
    the wallet rather than leaking which field differs. Then the message must name the same
    wallet and carry the domain, chain id and nonce the server issued, and ``now`` must lie in
    ``[issued_at - CLOCK_SKEW, expiration_time)``. Single use and the whitelist are the
    store layer's job.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    wallet = normalize_address(expected_address)
    fields = parse_message(message)
    signer = recover_signer(message, signature)
    if signer != wallet:
        raise Unauthorized(f"signature was not made by {wallet}")
    if fields.address != wallet:
        raise Unauthorized(f"sign-in message names {fields.address}, not {wallet}")
    if fields.domain != expected_domain:
        raise Unauthorized(
            f"sign-in message is for domain {fields.domain!r}, expected {expected_domain!r}"
        )
    if fields.chain_id != expected_chain_id:
        raise Unauthorized(
            f"sign-in message is for chain id {fields.chain_id}, expected {expected_chain_id}"
        )
    if not secrets.compare_digest(fields.nonce.encode(), expected_nonce.encode()):
        raise Unauthorized("sign-in message nonce does not match the challenge")
    if now >= fields.expiration_time:
        raise Unauthorized(
            f"sign-in message expired at {_iso(fields.expiration_time)}",
            recommended_action="request a new challenge and sign it promptly",
        )
    if fields.issued_at > now + CLOCK_SKEW:
        raise Unauthorized(
            f"sign-in message is not valid until {_iso(fields.issued_at)}",
            recommended_action="check the system clock, request a new challenge and sign it",
        )


__all__ = [
    "CHAINS",
    "CLOCK_SKEW",
    "DEFAULT_STATEMENT",
    "SiweFields",
    "build_message",
    "chain_id",
    "new_nonce",
    "normalize_address",
    "parse_message",
    "recover_signer",
    "verify_signed_message",
]
