"""Merchant webhook: POST an event as JSON, signed with HMAC-SHA256 over the raw body.

Headers: `X-Orderhub-Signature: sha256=<hex>`, `X-Orderhub-Event-Id` (the idempotency key the
merchant de-duplicates on) and `X-Orderhub-Timestamp` (Unix seconds; not covered by the
signature). `verify` is what the merchant's receiver runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from ingest.pull import Clock
from schemas.errors import ChannelError, Throttled, TransientError

SIGNATURE_HEADER = "X-Orderhub-Signature"
EVENT_ID_HEADER = "X-Orderhub-Event-Id"
TIMESTAMP_HEADER = "X-Orderhub-Timestamp"


def signature(secret: str, body: bytes) -> str:
    """The signature header value for `body`: `sha256=` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` signs `body` with `secret`, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.encode())


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def check_status(status: int, retry_after: str | None, reason: bytes) -> None:
    """2xx is delivered; 429 Throttled, 5xx TransientError, anything else ChannelError."""
    if 200 <= status < 300:
        return
    if status == 429:
        raise Throttled("merchant webhook: HTTP 429", retry_after_s(retry_after))
    if status >= 500:
        raise TransientError(f"merchant webhook: HTTP {status}")
    raise ChannelError(f"merchant webhook: HTTP {status}: {reason[:200]!r}", code=str(status))


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds; None when absent or an HTTP date (then the runner's backoff)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


class MerchantWebhook:
    """Posts events to one merchant's URL.

    url: the merchant's endpoint; secret: the shared signing secret, never logged;
    session: an open aiohttp session; clock: aware now, for `X-Orderhub-Timestamp`;
    timeout_s: a slower answer is a TransientError. Redirects are not followed.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.session = session
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, event_id: str, payload: Mapping[str, Any]) -> None:
        """Deliver one event (JSON-ready `payload`); raises as `check_status` says."""
        body = encode(payload)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: signature(self.secret, body),
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(int(self.clock().timestamp())),
        }
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, allow_redirects=False, timeout=self.timeout
            ) as response:
                check_status(
                    response.status, response.headers.get("Retry-After"), await response.read()
                )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"merchant webhook: {type(e).__name__}: {e}") from e
