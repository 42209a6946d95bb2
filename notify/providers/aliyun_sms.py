"""Aliyun SMS `SendSms` (API 2017-05-25) client, signed with the V3 signature ACS3-HMAC-SHA256.

Aliyun keeps no idempotency for SendSms: `OutId` carries our idempotency key so a double send
can be traced, but preventing one is the send log's job, not this client's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from ingest.pull import Clock
from schemas.errors import ChannelError, Throttled, TransientError

ALGORITHM = "ACS3-HMAC-SHA256"
ACTION = "SendSms"
VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
THROTTLE_CODES = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling.User"})


def percent_encode(value: str) -> str:
    """RFC 3986: everything but A-Z a-z 0-9 - _ . ~ as %XX of its UTF-8 bytes (space is %20)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def canonical_request(
    method: str, params: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> tuple[str, str]:
    """The canonical request of an RPC-style call (path `/`) and its signed-header list.

    `headers` are exactly the headers to sign (host, x-acs-*, content-type when sent).
    """
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    names = ";".join(sorted(signed))
    lines = "".join(f"{k}:{signed[k]}\n" for k in sorted(signed))
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), "/", canonical_query(params), lines, names, digest]), names


def signature(secret: str, canonical: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    access_key_id: str,
    secret: str,
    method: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The `Authorization` header value for a request with these params, headers and body."""
    canonical, names = canonical_request(method, params, headers, body)
    return (
        f"{ALGORITHM} Credential={access_key_id},SignedHeaders={names},"
        f"Signature={signature(secret, canonical)}"
    )


def acs_headers(
    host: str, action: str, version: str, when: datetime, nonce: str, body: bytes
) -> dict[str, str]:
    """The six headers V3 signs for a request without a content type."""
    return {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }


def biz_id(status: int, body: bytes) -> str:
    """The BizId of a SendSms answer, or the error it stands for."""
    if status >= 500:
        raise TransientError(f"aliyun SendSms: HTTP {status}")
    try:
        answer: Any = json.loads(body)
        code = str(answer.get("Code", ""))
    except (ValueError, AttributeError) as e:
        raise TransientError(f"aliyun SendSms: answer is not JSON: {body[:200]!r}") from e
    if code == "OK":
        return str(answer["BizId"])
    message = f"aliyun SendSms refused: {answer.get('Message', '')}"
    if code in THROTTLE_CODES or status == 429:
        raise Throttled(message)
    raise ChannelError(message, code=code or str(status))


def _random_nonce() -> str:
    return uuid.uuid4().hex


class AliyunSms:
    """Sends one templated SMS per call through Aliyun `SendSms`.

    endpoint: API base URL (tests point it at a local server); access_key_id and
    access_key_secret: the RAM user's key, never logged; session: an open aiohttp session;
    clock: aware now, signs `x-acs-date`; nonce: a fresh `x-acs-signature-nonce` per call;
    timeout_s: a call slower than this is a TransientError.
    """

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        nonce: Callable[[], str] = _random_nonce,
        timeout_s: float = 10.0,
    ) -> None:
        self.endpoint = URL(endpoint or DEFAULT_ENDPOINT)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.session = session
        self.clock = clock
        self.nonce = nonce
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(
        self, phone: str, sign_name: str, template_code: str, params: Mapping[str, str], out_id: str
    ) -> str:
        """Send template `template_code` to `phone`; the provider's BizId.

        Raises Throttled (rate or daily limit), TransientError (5xx, network, timeout),
        ChannelError with Aliyun's code (bad number, template, signature, key).
        """
        query = {
            "PhoneNumbers": phone,
            "SignName": sign_name,
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "OutId": out_id,
        }
        headers = acs_headers(self._host(), ACTION, VERSION, self.clock(), self.nonce(), b"")
        headers["Authorization"] = authorization(
            self.access_key_id, self.access_key_secret, "POST", query, headers, b""
        )
        url = URL(f"{self.endpoint.origin()}/?{canonical_query(query)}", encoded=True)
        try:
            # No body and so no content-type: the six headers are all that is signed.
            async with self.session.post(url, headers=headers, timeout=self.timeout) as response:
                return biz_id(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"aliyun SendSms: {type(e).__name__}: {e}") from e

    def _host(self) -> str:
        host = self.endpoint.raw_host or ""
        return host if self.endpoint.is_default_port() else f"{host}:{self.endpoint.port}"
