"""A fake Aliyun SMS API: SendSms (2017-05-25) behind an independent V3 signature check.

It recomputes ACS3-HMAC-SHA256 from the raw request (its own implementation, not the client's)
and answers like dysmsapi: HTTP 400/403/404 with `{"Code", "Message", "RequestId"}` for
refusals, HTTP 200 with `{"Code":"OK","BizId",…}` when sent. Checks, in order: the
Authorization format, the AccessKey (InvalidAccessKeyId.NotFound), the six signed headers,
action and version, the body hash, the date (±15 min), a reused nonce
(SignatureNonceUsed), the signature (SignatureDoesNotMatch), then the parameters
(Missing<Name>, isv.MOBILE_NUMBER_ILLEGAL, isv.INVALID_JSON_PARAM, isv.SMS_TEMPLATE_ILLEGAL,
isv.TEMPLATE_MISSING_PARAMETERS; a missing OutId is refused as `MissingOutId`, orderhub's own
rule since it always sends one). `throttle_next` sends are refused with `throttle_code`,
`busy_next` with HTTP 503. Like the real API it does not de-duplicate: every OutId is recorded
in `out_ids`, and `replayed_out_ids` lists those sent more than once.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

REQUIRED_SIGNED = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)
AUTH = re.compile(r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=(\w+)$")
PHONE = re.compile(r"^1\d{10}$")


def rfc3986(value: str) -> str:
    return quote(value, safe="~-._")


def expected_signature(secret: str, request: web.Request, signed: list[str], body: bytes) -> str:
    query = sorted((rfc3986(k), rfc3986(v)) for k, v in request.query.items())
    headers = "".join(f"{name}:{request.headers.get(name, '').strip()}\n" for name in signed)
    canonical = "\n".join(
        [
            request.method,
            request.path,
            "&".join(f"{k}={v}" for k, v in query),
            headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return hmac.new(
        secret.encode(), f"ACS3-HMAC-SHA256\n{digest}".encode(), hashlib.sha256
    ).hexdigest()


@dataclass
class FakeAliyunSms:
    access_key_id: str = "LTAI-fake-key-id"
    access_key_secret: str = "fake-key-secret"
    sign_names: set[str] = field(default_factory=lambda: {"茶叶旗舰店"})
    templates: dict[str, set[str]] = field(
        default_factory=lambda: {"SMS_480120001": {"order", "units"}}
    )
    now: Callable[[], float] = time.time
    throttle_next: int = 0
    throttle_code: str = "isv.BUSINESS_LIMIT_CONTROL"
    busy_next: int = 0
    sent: list[dict[str, str]] = field(default_factory=list)
    out_ids: Counter[str] = field(default_factory=Counter)
    nonces: set[str] = field(default_factory=set)

    @property
    def replayed_out_ids(self) -> list[str]:
        return [out_id for out_id, n in self.out_ids.items() if n > 1]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.rpc)
        return app

    async def rpc(self, request: web.Request) -> web.Response:
        body = await request.read()
        refused = self.authenticate(request, body)
        if refused is not None:
            return refused
        if self.busy_next:
            self.busy_next -= 1
            return web.json_response({"Code": "ServiceUnavailable"}, status=503)
        if self.throttle_next:
            self.throttle_next -= 1
            return answer(self.throttle_code, "触发流控", 200)
        return self.send_sms(dict(request.query))

    def authenticate(self, request: web.Request, body: bytes) -> web.Response | None:
        match = AUTH.match(request.headers.get("Authorization", ""))
        if match is None:
            return answer("IncompleteSignature", "bad Authorization header", 400)
        key_id, names, given = match.groups()
        if key_id != self.access_key_id:
            return answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        signed = names.split(";")
        if signed != sorted(signed) or not set(REQUIRED_SIGNED) <= set(signed):
            return answer("IncompleteSignature", "signed headers incomplete", 400)
        headers = request.headers
        if headers.get("x-acs-action") != "SendSms" or headers.get("x-acs-version") != "2017-05-25":
            return answer("InvalidAction.NotFound", "unknown action or version", 404)
        if headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return answer("ContentSHA256NotMatched", "body hash differs", 400)
        if not self.fresh(headers.get("x-acs-date", "")):
            return answer("InvalidTimeStamp.Expired", "date out of 15 minutes", 400)
        nonce = headers.get("x-acs-signature-nonce", "")
        if nonce in self.nonces:
            return answer("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        expected = expected_signature(self.access_key_secret, request, signed, body)
        if not hmac.compare_digest(expected, given):
            return answer(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
                400,
            )
        self.nonces.add(nonce)
        return None

    def fresh(self, stamp: str) -> bool:
        try:
            then = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return False
        return abs(self.now() - then) <= 15 * 60

    def send_sms(self, params: dict[str, str]) -> web.Response:
        for name in ("PhoneNumbers", "SignName", "TemplateCode", "OutId"):
            if not params.get(name):
                return answer(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        if not all(PHONE.match(p) for p in params["PhoneNumbers"].split(",")):
            return answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", 200)
        if params["SignName"] not in self.sign_names:
            return answer("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法", 200)
        wanted = self.templates.get(params["TemplateCode"])
        if wanted is None:
            return answer("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法", 200)
        try:
            values: Any = json.loads(params.get("TemplateParam", "{}"))
        except ValueError:
            return answer("isv.INVALID_JSON_PARAM", "JSON参数不合法", 200)
        if not isinstance(values, dict) or not wanted <= set(values):
            return answer("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值", 200)
        self.sent.append(params)
        self.out_ids[params["OutId"]] += 1
        return web.json_response(
            {
                "Code": "OK",
                "Message": "OK",
                "BizId": secrets.token_hex(10),
                "RequestId": secrets.token_hex(8),
            }
        )


def answer(code: str, message: str, status: int) -> web.Response:
    return web.json_response(
        {"Code": code, "Message": message, "RequestId": secrets.token_hex(8)}, status=status
    )
