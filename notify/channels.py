"""Provider adapters: one row of the send log → one provider call.

Each adapter takes what the stage stored in the row (target, provider template, params) and
calls its client in notify/providers with the row's idempotency key: Aliyun `OutId`, WeChat
`client_msg_id` (template messages; subscribe messages have no such field), the merchant
webhook's `X-Orderhub-Event-Id`. `log` writes the message with the buyer masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from ingest.pull import RateLimiter
from notify.process import Providers, mask
from notify.providers.aliyun_sms import AliyunSms
from notify.providers.merchant_webhook import MerchantWebhook
from notify.providers.wechat_message import WeChatMessages
from runtime.settings import NotifySettings
from schemas.errors import ConfigurationError

log = logging.getLogger("orderhub.notify")
Row = Mapping[str, Any]


class Provider(Protocol):
    name: str
    limiter: RateLimiter

    async def send(self, row: Row) -> str | None:
        """Deliver the row's message; the provider's reference (BizId, msgid) if any.

        Raises Throttled / TransientError (retried) or ChannelError (final)."""
        ...


class LogProvider:
    name = "log"

    def __init__(self) -> None:
        self.limiter = RateLimiter(1e9, 1_000_000)

    async def send(self, row: Row) -> str | None:
        log.info("notify %s %s via %s: %s", row["order_id"], row["event"], row["channel"],
                 row["message"])
        return None


class SmsProvider:
    name = "aliyun_sms"

    def __init__(self, client: AliyunSms, sign_name: str, rate: float) -> None:
        self.client = client
        self.sign_name = sign_name
        self.limiter = RateLimiter(rate, max(1, int(rate)))

    async def send(self, row: Row) -> str | None:
        log.info("sms %s %s to %s", row["order_id"], row["event"], mask(row["target"]))
        return await self.client.send(row["target"], self.sign_name, row["template"],
                                      row["params"].get("data", {}), row["idempotency_key"])


class WeChatProvider:
    def __init__(self, client: WeChatMessages, mode: str, rate: float) -> None:
        self.client = client
        self.name = f"wechat_{mode}"
        self.limiter = RateLimiter(rate, max(1, int(rate)))

    async def send(self, row: Row) -> str | None:
        data, page = row["params"].get("data", {}), row["params"].get("page")
        if self.name == "wechat_template":
            msgid = await self.client.template(row["target"], row["template"], data,
                                               row["idempotency_key"], url=page)
            return str(msgid)
        await self.client.subscribe(row["target"], row["template"], data, page=page)
        return None


class WebhookProvider:
    name = "webhook"

    def __init__(self, client: MerchantWebhook, rate: float) -> None:
        self.client = client
        self.limiter = RateLimiter(rate, max(1, int(rate)))

    async def send(self, row: Row) -> str | None:
        payload = {
            "event_id": row["idempotency_key"], "order_id": row["order_id"],
            "event": row["event"], "channel": row["channel"], "message": row["message"],
            "at": row["event_at"].isoformat() if row["event_at"] else None,
            **{k: v for k, v in row["params"].items() if k not in ("data", "page")},
        }
        await self.client.send(row["idempotency_key"], payload)
        return None


def build_providers(settings: NotifySettings, session: aiohttp.ClientSession,
                    clock: Callable[[], datetime]) -> dict[str, Provider]:
    """The providers whose credentials are configured, by provider name."""
    s = settings
    found: dict[str, Provider] = {"log": LogProvider()}
    if s.sms_access_key_id and s.sms_access_key_secret:
        if not s.sms_sign_name:
            raise ConfigurationError("ORDERHUB_NOTIFY__SMS_SIGN_NAME is required with SMS keys "
                                     "(the approved signature, e.g. 某某旗舰店)")
        client = AliyunSms(s.sms_endpoint, s.sms_access_key_id,
                           s.sms_access_key_secret.get_secret_value(), session, clock,
                           timeout_s=s.timeout_s)
        found["aliyun_sms"] = SmsProvider(client, s.sms_sign_name, s.sms_rate_per_s)
    if s.wechat_appid and s.wechat_secret:
        wechat = WeChatMessages(s.wechat_base_url, s.wechat_appid,
                                s.wechat_secret.get_secret_value(), session, clock,
                                timeout_s=s.timeout_s)
        provider = WeChatProvider(wechat, s.wechat_mode, s.wechat_rate_per_s)
        found[provider.name] = provider
    if s.webhook_url and s.webhook_secret:
        hook = MerchantWebhook(s.webhook_url, s.webhook_secret.get_secret_value(), session,
                               clock, timeout_s=s.timeout_s)
        found["webhook"] = WebhookProvider(hook, s.webhook_rate_per_s)
    return found


def configured(settings: NotifySettings) -> Providers:
    """Which providers the stage may route to (the sender builds the same ones)."""
    s = settings
    return Providers(
        sms=bool(s.sms_access_key_id and s.sms_access_key_secret),
        wechat=f"wechat_{s.wechat_mode}" if s.wechat_appid and s.wechat_secret else None,
        webhook=s.webhook_url if s.webhook_url and s.webhook_secret else None,
    )
