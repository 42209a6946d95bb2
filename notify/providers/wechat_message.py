"""WeChat buyer messages: mini-program subscribe messages and official-account template messages.

Both need an access token from `/cgi-bin/stable_token`; it is cached until shortly before it
expires and fetched again once when WeChat calls it invalid (40001) or expired (42001).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ingest.pull import Clock, read_json
from schemas.errors import ChannelError, Throttled, TransientError

STALE_TOKEN = frozenset({40001, 42001})
THROTTLED = frozenset({45009, 45011})  # daily quota reached, calling too often
SYSTEM_BUSY = -1
EARLY_REFRESH = timedelta(minutes=5)


class _StaleToken(Exception):
    """WeChat no longer accepts the cached token."""


def checked(answer: Any, what: str) -> Mapping[str, Any]:
    """A WeChat answer with errcode 0 (or none), else the error its errcode stands for."""
    if not isinstance(answer, Mapping):
        raise TransientError(f"wechat {what}: unexpected answer {answer!r:.200}")
    code = int(answer.get("errcode", 0))
    message = f"wechat {what}: {answer.get('errmsg', '')}"
    if code == 0:
        return answer
    if code in STALE_TOKEN:
        raise _StaleToken(message)
    if code in THROTTLED:
        raise Throttled(message)
    if code == SYSTEM_BUSY:
        raise TransientError(message)
    raise ChannelError(message, code=str(code))


def keywords(data: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Template keywords as WeChat wants them: {"thing1": {"value": "…"}}."""
    return {name: {"value": value} for name, value in data.items()}


class WeChatMessages:
    """Sends subscribe and template messages for one WeChat app.

    base_url: API base (https://api.weixin.qq.com; tests point it at a local server);
    appid and secret: the app's credentials, never logged; session: an open aiohttp session;
    clock: aware now, for the token's expiry; miniprogram_state: which build a subscribe
    message opens (formal, trial, developer); timeout_s: a slower call is a TransientError.
    """

    def __init__(
        self,
        base_url: str,
        appid: str,
        secret: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        miniprogram_state: str = "formal",
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.session = session
        self.clock = clock
        self.miniprogram_state = miniprogram_state
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.token: str | None = None
        self.token_expires: datetime | None = None

    async def subscribe(
        self, openid: str, template_id: str, data: Mapping[str, str], page: str | None = None
    ) -> None:
        """A subscribe message; 43101 (the buyer did not subscribe) is a ChannelError."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": keywords(data),
            "miniprogram_state": self.miniprogram_state,
            "lang": "zh_CN",
        }
        if page is not None:
            body["page"] = page
        await self._call("/cgi-bin/message/subscribe/send", body, "subscribe/send")

    async def template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, str],
        client_msg_id: str,
        url: str | None = None,
    ) -> int:
        """A template message, de-duplicated by WeChat on (openid, client_msg_id); its msgid."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": keywords(data),
            "client_msg_id": client_msg_id,
        }
        if url is not None:
            body["url"] = url
        answer = await self._call("/cgi-bin/message/template/send", body, "template/send")
        return int(answer["msgid"])

    async def _call(self, path: str, body: Mapping[str, Any], what: str) -> Mapping[str, Any]:
        try:
            return await self._post_with_token(path, body, what)
        except _StaleToken:
            self.token = None
        try:
            return await self._post_with_token(path, body, what)
        except _StaleToken as e:
            raise ChannelError(f"{e} (even with a fresh token)", code="40001") from e

    async def _post_with_token(
        self, path: str, body: Mapping[str, Any], what: str
    ) -> Mapping[str, Any]:
        token = await self._token()
        return checked(await self._post(f"{path}?access_token={token}", body, what), what)

    async def _token(self) -> str:
        now = self.clock()
        if self.token and self.token_expires and now < self.token_expires:
            return self.token
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
            "force_refresh": False,
        }
        try:
            answer = checked(
                await self._post("/cgi-bin/stable_token", body, "stable_token"), "stable_token"
            )
        except _StaleToken as e:  # cannot happen without a token; keep the type ours
            raise TransientError(str(e)) from e
        self.token = str(answer["access_token"])
        self.token_expires = now + timedelta(seconds=int(answer["expires_in"])) - EARLY_REFRESH
        return self.token

    async def _post(self, path_and_query: str, body: Mapping[str, Any], what: str) -> Any:
        try:
            async with self.session.post(
                f"{self.base_url}{path_and_query}", json=body, timeout=self.timeout
            ) as response:
                return await read_json(response, f"wechat {what}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"wechat {what}: {type(e).__name__}: {e}") from e
