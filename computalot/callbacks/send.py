"""One callback attempt over the network: resolve, check every address, POST to the checked one.

The name is resolved here, at send time, and every address it resolves to is judged
(``urls.refusal``): one refused address refuses the target, so a name cannot smuggle a private
address behind a public one. The request then goes to the address that was checked, never to
the name again (a second lookup could answer differently: DNS rebinding), with the name kept in
``Host`` and, for https, in the TLS server name, so virtual hosting and certificate checks work
as for any client. Redirects are not followed (a 3xx is a failed attempt), proxies from the
environment are not used, and at most :data:`MAX_READ_BYTES` of the answer are read.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import httpx

from computalot.callbacks.urls import (
    CallbackRefused,
    IPAddress,
    Policy,
    Target,
    check_target,
    literal_address,
    refusal,
)

MAX_READ_BYTES = 4096


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. ``refused``: the target is not allowed (final, no retry)."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    refused: bool = False


async def resolve(target: Target, policy: Policy) -> IPAddress:
    """The address to connect to; :class:`CallbackRefused` when any address of the name is
    refused, ``OSError`` when the name does not resolve (worth retrying)."""
    if target.literal is not None:
        reason = refusal(target.literal, policy)
        if reason is not None:
            raise CallbackRefused(reason)
        return target.literal
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[IPAddress] = []
    for info in infos:
        found = literal_address(str(info[4][0]).split("%", 1)[0])
        if found is not None and found not in addresses:
            addresses.append(found)
    if not addresses:
        raise OSError(f"{target.host} resolved to no address")
    for address in addresses:
        reason = refusal(address, policy)
        if reason is not None:
            raise CallbackRefused(f"{target.host} resolves to {reason}")
    return addresses[0]


def pinned_url(target: Target, address: IPAddress) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{target.scheme}://{host}:{target.port}{target.path}"


async def post_once(
    url: str, policy: Policy, body: bytes, headers: dict[str, str], timeout_s: float
) -> Outcome:
    """Check ``url`` again (the policy may have changed since submit), resolve it and POST
    ``body``; every failure is an :class:`Outcome`, never an exception."""
    try:
        target = check_target(url, policy)
        address = await asyncio.wait_for(resolve(target, policy), timeout_s)
    except CallbackRefused as exc:
        return Outcome(False, error=f"refused: {exc}", refused=True)
    except (OSError, TimeoutError) as exc:
        return Outcome(False, error=f"name resolution failed: {exc or type(exc).__name__}")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        return await asyncio.wait_for(
            _post(pinned_url(target, address), target, body, headers, timeout_s, extensions),
            timeout_s * 2,
        )
    except TimeoutError:
        return Outcome(False, error=f"timed out after {timeout_s * 2:g} s")


async def _post(
    url: str,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    extensions: dict[str, str],
) -> Outcome:
    # A client per attempt: a pooled connection made for another name on the same address
    # would carry that name's TLS session.
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
    ) as client:
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={**headers, "Host": target.host_header},
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= MAX_READ_BYTES:
                    break
        except httpx.HTTPError:
            pass  # the status is what counts; a broken body does not change it
        finally:
            await response.aclose()
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, status_code=code)
    if 300 <= code < 400:
        return Outcome(False, status_code=code, error=f"redirect not followed ({code})")
    return Outcome(False, status_code=code, error=f"answered {code}")
