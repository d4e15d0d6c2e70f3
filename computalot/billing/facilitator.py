"""Facilitators: who decides that an x402 payment is good, and settles it (docs/llms-full.md,
"Billing").

    Facilitator (protocol: verify, settle)
    ├── BuiltinFacilitator   the default: checks the EIP-3009 authorisation here, with
    │                        eth-account; settling is recording it (no chain call)
    └── RemoteFacilitator    COMPUTALOT_X402_FACILITATOR_URL: POST {url}/verify, {url}/settle
                             (x402's facilitator HTTP API, e.g. https://x402.org/facilitator)

Both answer the same :class:`Verdict`; its ``reason`` uses x402's reason codes, so a client sees
the same words whichever facilitator judged. Neither checks that a nonce is unused: the
platform's database does that, with a unique key (``computalot.billing.x402_pay``), and a remote
facilitator's chain does it again when it settles.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data

from computalot.settings import Settings

ERR_SIGNATURE = "invalid_exact_evm_payload_signature"
ERR_RECIPIENT = "invalid_exact_evm_payload_recipient_mismatch"
ERR_VALUE = "invalid_exact_evm_payload_authorization_value_mismatch"
ERR_VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
ERR_VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
ERR_NONCE_USED = "invalid_exact_evm_nonce_already_used"
ERR_NETWORK = "network_mismatch"
ERR_SCHEME = "unsupported_scheme"
ERR_ASSET = "invalid_exact_evm_asset_mismatch"
ERR_PAYLOAD = "invalid_payload"
ERR_FACILITATOR = "facilitator_unavailable"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_UINT = re.compile(r"[0-9]{1,78}")

TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class Verdict:
    """A facilitator's answer: ``ok``, else ``reason`` (x402's code) and ``message`` (words).
    ``payer`` is the authorisation's ``from``; ``transaction`` the settlement's hash, if any."""

    ok: bool
    reason: str | None = None
    message: str | None = None
    payer: str | None = None
    transaction: str | None = None

    @classmethod
    def refuse(cls, reason: str, message: str, payer: str | None = None) -> Verdict:
        return cls(False, reason, message, payer)


class Facilitator(Protocol):
    #: True when ``settle`` moves money (on-chain): the payment is then claimed before it is
    #: settled, so no second payment of one quote is ever settled.
    moves_money: bool

    async def verify(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        """Is ``payment`` (an x402 payload) a valid payment of ``requirement`` (one of a
        quote's ``accepts``)? ``requirement`` is the server's, never the client's copy."""
        ...

    async def settle(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        """Move the money (or record that it will move); called once, after ``verify``."""
        ...


def chain_id(network: str) -> int:
    """``eip155:84532`` -> 84532."""
    prefix, _, number = network.partition(":")
    if prefix != "eip155" or not number.isdigit():
        raise ValueError(f"not an EVM CAIP-2 network: {network!r}")
    return int(number)


def typed_data(authorization: dict[str, str], requirement: dict[str, Any]) -> dict[str, Any]:
    """The EIP-712 ``TransferWithAuthorization`` (EIP-3009) the payer signed, under the token's
    domain as the server advertised it (``extra.name``/``extra.version``, the chain, the
    token's address)."""
    extra = requirement.get("extra") or {}
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN,
            "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION,
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": str(extra.get("name", "")),
            "version": str(extra.get("version", "")),
            "chainId": chain_id(str(requirement["network"])),
            "verifyingContract": str(requirement["asset"]),
        },
        "message": {
            "from": authorization["from"],
            "to": authorization["to"],
            "value": int(authorization["value"]),
            "validAfter": int(authorization["validAfter"]),
            "validBefore": int(authorization["validBefore"]),
            "nonce": bytes.fromhex(authorization["nonce"][2:]),
        },
    }


def recover_signer(authorization: dict[str, str], requirement: dict[str, Any], sig: str) -> str:
    """The address that signed ``authorization`` (checksummed); raises ``ValueError`` on a
    signature that is not one."""
    signable = encode_typed_data(full_message=typed_data(authorization, requirement))
    try:
        return str(Account.recover_message(signable, signature=sig))
    except Exception as exc:  # eth-keys raises several types for a malformed signature
        raise ValueError(f"not a valid signature: {exc}") from None


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


class BuiltinFacilitator:
    """Checks an EIP-3009 authorisation off-chain: the scheme, chain and token are the quote's,
    the money goes to ``payTo``, ``value`` covers the amount, now is inside
    [``validAfter``, ``validBefore``), and the EIP-712 signature recovers to ``from``.

    Settling records the signed authorisation (``computalot.billing.x402_pay`` stores it): the
    operator submits it on-chain (``transferWithAuthorization``) with any relayer; nothing here
    holds a key or talks to a chain. Externally owned accounts only (no ERC-1271/6492 smart
    wallets: use a remote facilitator for those)."""

    moves_money = False

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock

    async def verify(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        return self.check(payment, requirement)

    def check(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        accepted = payment.get("accepted") or {}
        inner = payment.get("payload") or {}
        auth = inner.get("authorization") or {}
        signature = inner.get("signature")
        payer = auth.get("from") if isinstance(auth.get("from"), str) else None
        if accepted.get("scheme") != requirement["scheme"]:
            return Verdict.refuse(ERR_SCHEME, f"scheme must be {requirement['scheme']!r}", payer)
        if accepted.get("network") != requirement["network"]:
            return Verdict.refuse(ERR_NETWORK, f"network must be {requirement['network']}", payer)
        if not _same(str(accepted.get("asset", "")), requirement["asset"]):
            return Verdict.refuse(ERR_ASSET, f"asset must be {requirement['asset']}", payer)
        problem = _shape_problem(auth, signature)
        if problem:
            return Verdict.refuse(ERR_PAYLOAD, problem, payer)
        if not _same(auth["to"], requirement["payTo"]):
            return Verdict.refuse(
                ERR_RECIPIENT,
                f"authorization.to is {auth['to']}, payments go to {requirement['payTo']}",
                payer,
            )
        if int(auth["value"]) < int(requirement["amount"]):
            return Verdict.refuse(
                ERR_VALUE,
                f"authorization.value {auth['value']} is below the quote's {requirement['amount']}",
                payer,
            )
        now = int(self._clock())
        if int(auth["validAfter"]) > now:
            return Verdict.refuse(ERR_VALID_AFTER, "the authorization is not valid yet", payer)
        if int(auth["validBefore"]) <= now:
            return Verdict.refuse(ERR_VALID_BEFORE, "the authorization has expired", payer)
        try:
            signer = recover_signer(auth, requirement, str(signature))
        except ValueError as exc:
            return Verdict.refuse(ERR_SIGNATURE, str(exc), payer)
        if not _same(signer, auth["from"]):
            return Verdict.refuse(
                ERR_SIGNATURE, "the signature was not made by authorization.from", payer
            )
        return Verdict(True, payer=signer)

    async def settle(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        auth = payment["payload"]["authorization"]
        return Verdict(True, payer=auth["from"])


def _shape_problem(auth: dict[str, Any], signature: Any) -> str | None:
    for key in ("from", "to"):
        if not _ADDRESS.fullmatch(str(auth.get(key, ""))):
            return f"authorization.{key} must be a 0x address"
    for key in ("value", "validAfter", "validBefore"):
        if not _UINT.fullmatch(str(auth.get(key, ""))):
            return f"authorization.{key} must be a decimal integer"
    if not _NONCE.fullmatch(str(auth.get("nonce", ""))):
        return "authorization.nonce must be 32 bytes of hex (0x + 64)"
    if not isinstance(signature, str) or not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
        return "signature must be 65 bytes of hex (0x + 130)"
    return None


class RemoteFacilitator:
    """x402's facilitator HTTP API: ``POST {url}/verify`` and ``{url}/settle`` with
    ``{"x402Version": 2, "paymentPayload", "paymentRequirements"}``. An unreachable or
    garbled facilitator refuses the payment (``facilitator_unavailable``): nothing is credited
    on an answer we could not read."""

    moves_money = True

    def __init__(self, url: str, *, timeout_s: float = 30.0, transport: Any = None) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout_s
        self._transport = transport

    async def _call(
        self, path: str, payment: dict[str, Any], requirement: dict[str, Any]
    ) -> dict[str, Any] | None:
        body = {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirement}
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport
            ) as client:
                answer = await client.post(f"{self.url}{path}", json=body)
            data = answer.json()
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    async def verify(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        data = await self._call("/verify", payment, requirement)
        if data is None:
            return Verdict.refuse(ERR_FACILITATOR, f"no readable answer from {self.url}/verify")
        if data.get("isValid") is True:
            return Verdict(True, payer=data.get("payer"))
        return Verdict.refuse(
            str(data.get("invalidReason") or "invalid_payment"),
            str(data.get("invalidMessage") or "the facilitator refused the payment"),
            data.get("payer"),
        )

    async def settle(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        data = await self._call("/settle", payment, requirement)
        if data is None:
            return Verdict.refuse(ERR_FACILITATOR, f"no readable answer from {self.url}/settle")
        if data.get("success") is True:
            return Verdict(True, payer=data.get("payer"), transaction=data.get("transaction"))
        return Verdict.refuse(
            str(data.get("errorReason") or "settlement_failed"),
            str(data.get("errorMessage") or "the facilitator could not settle the payment"),
            data.get("payer"),
        )


def facilitator_for(settings: Settings) -> Facilitator:
    """The remote facilitator when ``COMPUTALOT_X402_FACILITATOR_URL`` is set, else built-in."""
    if settings.x402_facilitator_url:
        return RemoteFacilitator(settings.x402_facilitator_url)
    return BuiltinFacilitator()
