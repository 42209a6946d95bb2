"""orderhub settings: one frozen object read from ORDERHUB_* variables (nested with __)."""

from __future__ import annotations

import json
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from normalize.csv_mapping import DEFAULT, DEFAULT_NAME, CsvMapping
from normalize.rates import DEFAULT_RATES


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """`ORDERHUB_X__SECRET=` (empty) means unset, never an empty signing key."""
        if not isinstance(data, dict):
            return data
        return {k: None if v == "" and _defaults_to_none(cls, k) else v for k, v in data.items()}


def _defaults_to_none(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    return field is not None and not field.is_required() and field.default is None


class KafkaSettings(_Section):
    bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset → the embedded broker"
    )
    topic_prefix: str = Field(default="", description="prepended to every topic name")
    group_prefix: str = Field(default="orderhub", description="consumer group = prefix-stage")
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    session_timeout_s: float = Field(default=6.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    fetch_max_wait_ms: int = Field(
        default=20, ge=1, le=1500, description="stage consumers: longest a Fetch may wait for "
        "data (faust's own 1,500 ms adds up to that much latency per stage on Tansu)")
    producer_batch_bytes: int = Field(
        default=512 * 1024, ge=16 * 1024, le=900 * 1024,
        description="stage producers: bytes per partition batch (aiokafka's default 16 KiB "
        "holds ~5 orders, so a batch of 500 took ~17 produce round trips)")
    producer_linger_ms: int = Field(default=0, ge=0, description="stage producers: linger")
    producer_compression: Literal["none", "gzip", "lz4", "zstd"] = Field(
        default="none", description="stage producers: compression (docs/performance.md)")


class DatabaseSettings(_Section):
    url: str | None = Field(default=None, description="SQLAlchemy URL; unset → embedded Postgres")
    pool_size: int = Field(default=5, ge=1)

    @field_validator("url")
    @classmethod
    def _psycopg_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for plain in ("postgresql://", "postgres://"):
            if value.startswith(plain):
                return "postgresql+psycopg://" + value[len(plain) :]
        return value


class StageSettings(_Section):
    batch_size: int = Field(default=500, ge=1)
    batch_within_s: float = Field(
        default=0.05, gt=0, description="longest a stage waits to fill a batch; each stage adds "
        "up to this to an order's latency (BENCHMARKS.md: 0.2 s gave p99 962 ms at 500/s)")
    retry_attempts: int = Field(default=5, ge=1)
    retry_max_wait_s: float = Field(default=8.0, gt=0)


class MetricsSettings(_Section):
    port: int = Field(default=9464, ge=0, description="0 disables the metrics endpoint")
    host: str = "127.0.0.1"


class DedupSettings(_Section):
    """Suspected duplicates: same fingerprint, event times within the window."""

    window_s: float = Field(default=180.0, gt=0, description="paid_at (else created_at) apart")
    amount_tolerance_cny: Decimal = Field(default=Decimal(0), ge=0,
                                          description="paid_cny may differ by this much")
    fingerprint_retention_s: float = Field(
        default=7 * 86_400.0, gt=0,
        description="fingerprints whose event time is older than this (against the stage's "
                    "clock) are pruned: a report arriving later than that is not compared")
    prune_every_batches: int = Field(default=200, ge=1,
                                     description="a worker prunes once per this many batches")

    @model_validator(mode="after")
    def _retention_covers_window(self) -> DedupSettings:
        if self.fingerprint_retention_s <= self.window_s:
            raise ValueError("fingerprint_retention_s must exceed window_s")
        return self


class AllocateSettings(_Section):
    """Routing rules, approvals and holds: merchant data, not code (docs/allocation.md)."""

    rules: tuple[str, ...] = Field(
        default=("single_complete", "region_ranking", "nearest"),
        description="preference order among warehouses; reorder to change what wins")
    region_ranking: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="'浙江省' or '浙江省/杭州市' -> warehouse codes, best first")
    approval_threshold_cny: Decimal = Field(default=Decimal(5000), ge=0)
    hold_rules: tuple[str, ...] = Field(
        default=(), description="more approval holds: buyer_note, cod, first_time_address")

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"single_complete", "region_ranking", "nearest"}
        unknown = [r for r in value if r not in known]
        if unknown or len(set(value)) != len(value):
            raise ValueError(f"rules must be distinct names among {sorted(known)}, got "
                             f"{list(value)}")
        return value

    @field_validator("hold_rules")
    @classmethod
    def _known_holds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"buyer_note", "cod", "first_time_address"}
        unknown = [r for r in value if r not in known]
        if unknown:
            raise ValueError(f"unknown hold rule(s) {unknown}; known: {sorted(known)}")
        return value


class WebhookSettings(_Section):
    """The push receiver (`orderhub stage ingest-http`); a channel without a secret gets 503."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, description="0 disables the receiver inside `up`")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    shopify_secret: SecretStr | None = Field(default=None, description="app client secret")
    douyin_app_key: str | None = None
    douyin_app_secret: SecretStr | None = None
    wechat_token: SecretStr | None = Field(default=None, description="message push token")


class PollSettings(_Section):
    """The pollers (`orderhub stage ingest-poll`): one loop per configured shop."""

    overlap_s: float = Field(default=120.0, ge=0, description="each window re-reads this much")
    first_lookback_s: float = Field(default=3600.0, ge=0,
                                    description="a new shop without --since starts this far back")
    fetch_check_s: float = Field(default=1.0, gt=0,
                                 description="how often pushed ids are fetched in full")
    max_backoff_s: float = Field(default=300.0, gt=0)


class CsvSettings(_Section):
    """Merchants' CSV/Excel layouts: a shop without an entry in `shops` uses `default`."""

    mappings: dict[str, CsvMapping] = Field(
        default_factory=dict, description="mapping name -> layout; `default` may be overridden"
    )
    shops: dict[str, str] = Field(default_factory=dict, description="shop -> mapping name")

    @model_validator(mode="after")
    def _shops_name_known_mappings(self) -> CsvSettings:
        known = {*self.mappings, DEFAULT_NAME}
        unknown = sorted({name for name in self.shops.values() if name not in known})
        if unknown:
            raise ValueError(f"shops name unknown csv mappings: {', '.join(unknown)}")
        return self

    def mapping_for(self, shop: str) -> CsvMapping:
        """The layout of `shop`'s exports."""
        name = self.shops.get(shop, DEFAULT_NAME)
        return self.mappings.get(name, DEFAULT)


NOTIFY_EVENTS = ("paid", "allocated", "shipped", "delivered", "cancelled", "refunded",
                 "return_received", "returned")
NOTIFY_CHANNELS = ("buyer", "sms", "wechat", "webhook", "log")


def _log_every_event() -> dict[str, tuple[str, ...]]:
    """The default matrix: the development log only, nothing to buyers until the merchant
    configures providers. `paid` is left out: the channels confirm payment themselves."""
    return {event: ("log",) for event in NOTIFY_EVENTS if event != "paid"}


class NotifySettings(_Section):
    """Buyer notifications: which events go out through which channel, providers, pacing.

    `matrix` is the merchant's choice: event -> channels. `buyer` picks per order: WeChat when
    the order carries the buyer's openid, else SMS when its phone is usable, else nothing
    (recorded). Provider secrets are SecretStr and never logged.
    """

    matrix: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: _log_every_event(),
        description="event -> channels (buyer, sms, wechat, webhook, log)")
    language: str = Field(default="zh_CN", description="templates' language by default")
    languages: dict[str, str] = Field(default_factory=dict,
                                      description="sales channel -> language, e.g. shopify=en_US")
    templates_dir: Path | None = Field(default=None, description="the merchant's templates")
    quiet_start: time = Field(default=time(22, 0), description="GMT+8; SMS waits until quiet_end")
    quiet_end: time = time(8, 0)
    quiet_channels: tuple[str, ...] = ("sms",)
    max_attempts: int = Field(default=8, ge=1, description="then the send is failed and DLQ'd")
    backoff_s: float = Field(default=2.0, gt=0, description="first retry delay, doubled each time")
    max_backoff_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0, description="a claimed send older than this is "
                           "retried with the same idempotency key (its sender died)")
    poll_s: float = Field(default=0.2, gt=0, description="the sender's idle poll interval")
    batch: int = Field(default=500, ge=1, description="the most rows one sender round claims; "
                       "a round ends when its slowest provider is through (docs/performance.md)")
    sms_endpoint: str = "https://dysmsapi.aliyuncs.com"
    sms_access_key_id: str | None = None
    sms_access_key_secret: SecretStr | None = None
    sms_sign_name: str | None = Field(default=None, description="the approved SMS signature")
    sms_rate_per_s: float = Field(default=50.0, gt=0)
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str | None = None
    wechat_secret: SecretStr | None = None
    wechat_mode: Literal["subscribe", "template"] = "subscribe"
    wechat_rate_per_s: float = Field(default=20.0, gt=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_rate_per_s: float = Field(default=50.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _a_round_fits_in_its_lease(self) -> NotifySettings:
        """A round's rows must all be tried before their lease runs out, or another sender
        could claim and send them again: `batch` rows at the slowest configured provider's
        rate, plus one timeout, within `lease_s`."""
        # A provider is on when its credentials are set, as notify.channels.build_providers says.
        on = {"sms_rate_per_s": (self.sms_rate_per_s,
                                 self.sms_access_key_id and self.sms_access_key_secret),
              "wechat_rate_per_s": (self.wechat_rate_per_s,
                                    self.wechat_appid and self.wechat_secret),
              "webhook_rate_per_s": (self.webhook_rate_per_s,
                                     self.webhook_url and self.webhook_secret)}
        configured = {name: rate for name, (rate, credentials) in on.items() if credentials}
        if not configured:
            return self
        name, rate = min(configured.items(), key=lambda item: item[1])
        needed = self.batch / rate + self.timeout_s
        if needed >= self.lease_s:
            raise ValueError(
                f"a round of batch={self.batch} at {name}={rate:g} plus timeout_s="
                f"{self.timeout_s:g} takes up to {needed:g} s, not less than lease_s="
                f"{self.lease_s:g}: another sender could send those rows again; lower "
                f"ORDERHUB_NOTIFY__BATCH or raise ORDERHUB_NOTIFY__LEASE_S")
        return self

    @field_validator("matrix")
    @classmethod
    def _known_events_and_channels(
        cls, value: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        events = sorted(set(value) - set(NOTIFY_EVENTS))
        channels = sorted({c for cs in value.values() for c in cs} - set(NOTIFY_CHANNELS))
        if events:
            raise ValueError(f"unknown notify event(s) {events}; events: {NOTIFY_EVENTS}")
        if channels:
            raise ValueError(f"unknown notify channel(s) {channels}; channels: {NOTIFY_CHANNELS}")
        return value


class KpiSettings(_Section):
    """The KPI collector (`orderhub stage kpi`) and `orderhub status` (docs/kpis.md)."""

    refresh_s: float = Field(default=15.0, gt=0, description="seconds between KPI refreshes")
    ship_cutoff: time = Field(
        default=time(16, 0),
        description="GMT+8: an order paid before it is due to ship the same day, after it the "
                    "next day")
    window: Literal["today", "24h"] = Field(
        default="today", description="orders counted by the ratio KPIs: created today (GMT+8 "
                                     "midnight cut) or in the last 24 hours")


class Settings(BaseSettings):
    """Everything a process needs, built once in the composition root and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="ORDERHUB_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    data_dir: Path = Field(default=Path(".orderhub"), description="embedded services' home")
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    stage: StageSettings = StageSettings()
    metrics: MetricsSettings = MetricsSettings()
    dedup: DedupSettings = DedupSettings()
    allocate: AllocateSettings = AllocateSettings()
    webhooks: WebhookSettings = WebhookSettings()
    poll: PollSettings = PollSettings()
    csv: CsvSettings = CsvSettings()
    rates: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {c: dict(r) for c, r in DEFAULT_RATES.items()},
        description="currency -> {effective date: CNY per unit}",
    )
    notify: NotifySettings = NotifySettings()
    kpi: KpiSettings = KpiSettings()

    def to_env(self) -> dict[str, str]:
        """These settings as ORDERHUB_* variables, so a child process sees exactly them."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if isinstance(value, dict) and isinstance(getattr(self, name), _Section):
                for sub, v in value.items():
                    raw = getattr(getattr(self, name), sub)
                    if isinstance(raw, SecretStr):  # dumped as ****: pass the real value on
                        v = raw.get_secret_value()
                    if v is not None:
                        env[f"ORDERHUB_{name.upper()}__{sub.upper()}"] = _env_text(v)
            else:
                env[f"ORDERHUB_{name.upper()}"] = _env_text(value)
        return env


def _env_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
