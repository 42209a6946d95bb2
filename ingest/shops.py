"""The shops orderhub pulls from, kept in Postgres; credentials are env-variable names.

A shop row says *where* its secrets are (`app_secret` → `ACME_TAOBAO_SECRET`), never what they
are, so `orderhub shops list`, backups and the database itself hold no secret. The process that
polls resolves the names in its own environment when it starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from ingest.pull import ShopConfig
from schemas.errors import ConfigurationError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Shop:
    channel: str
    shop: str
    credentials: Mapping[str, str] = field(default_factory=dict)  # name -> env variable
    options: Mapping[str, str] = field(default_factory=dict)
    poll_interval_s: float = 60.0
    enabled: bool = True

    def resolve(self, environ: Mapping[str, str]) -> ShopConfig:
        """The shop with its secrets read from `environ`; a missing variable is named, not shown."""
        missing = sorted(v for v in self.credentials.values() if not environ.get(v))
        if missing:
            raise ConfigurationError(
                f"shop {self.channel}/{self.shop}: environment variable(s) "
                f"{', '.join(missing)} not set in the polling process")
        return ShopConfig(
            channel=self.channel, shop=self.shop,
            credentials={name: environ[var] for name, var in self.credentials.items()},
            options=dict(self.options), poll_interval_s=self.poll_interval_s)


def parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    """`name=value` command-line pairs; a malformed one is a ConfigurationError saying which."""
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"--{what} expects NAME=VALUE, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def validate(shop: Shop, pullable: Sequence[str]) -> None:
    if shop.channel not in pullable:
        raise ConfigurationError(
            f"channel {shop.channel!r} cannot be polled; channels with a pull client: "
            f"{', '.join(pullable)}")
    if not shop.shop.strip():
        raise ConfigurationError("the shop id must not be empty")
    for name, var in shop.credentials.items():
        if not ENV_NAME.match(var):
            raise ConfigurationError(
                f"credential {name!r} must name an environment variable (letters, digits, _), "
                f"not hold the secret itself")
    if shop.poll_interval_s <= 0:
        raise ConfigurationError("--interval must be a positive number of seconds")


def save(conn: Connection, shop: Shop) -> bool:
    """Add the shop or replace its settings; True when it is new. Its cursor is kept."""
    row = conn.execute(
        text("INSERT INTO shops (channel, shop, credentials, options, poll_interval_s, enabled) "
             "VALUES (:c, :s, CAST(:cred AS jsonb), CAST(:opt AS jsonb), :i, :e) "
             "ON CONFLICT (channel, shop) DO UPDATE SET credentials = EXCLUDED.credentials, "
             "options = EXCLUDED.options, poll_interval_s = EXCLUDED.poll_interval_s, "
             "enabled = EXCLUDED.enabled, updated_at = now() RETURNING (xmax = 0) AS inserted"),
        {"c": shop.channel, "s": shop.shop, "cred": json.dumps(dict(shop.credentials)),
         "opt": json.dumps(dict(shop.options)), "i": Decimal(str(shop.poll_interval_s)),
         "e": shop.enabled},
    ).one()
    return bool(row.inserted)


def remove(conn: Connection, channel: str, shop: str) -> bool:
    """Forget a shop, its cursor and its pending fetches; False when there was no such shop."""
    gone = conn.execute(text("DELETE FROM shops WHERE channel = :c AND shop = :s"),
                        {"c": channel, "s": shop}).rowcount
    for table in ("poll_cursors", "fetch_requests"):
        conn.execute(text(f"DELETE FROM {table} WHERE channel = :c AND shop = :s"),  # noqa: S608
                     {"c": channel, "s": shop})
    return bool(gone)


def load(conn: Connection, channel: str | None = None, shop: str | None = None) -> list[Shop]:
    rows = conn.execute(
        text("SELECT channel, shop, credentials, options, poll_interval_s, enabled FROM shops "
             "WHERE (CAST(:c AS text) IS NULL OR channel = :c) "
             "AND (CAST(:s AS text) IS NULL OR shop = :s) ORDER BY channel, shop"),
        {"c": channel, "s": shop},
    ).mappings()
    return [Shop(r["channel"], r["shop"], dict(r["credentials"]), dict(r["options"]),
                 float(r["poll_interval_s"]), bool(r["enabled"])) for r in rows]


def listing(conn: Connection) -> list[dict[str, Any]]:
    """Shops with their cursors, for `orderhub shops list`: variable names, never values."""
    rows = conn.execute(
        text("SELECT s.channel, s.shop, s.credentials, s.options, s.poll_interval_s, s.enabled, "
             "c.position, c.orders_seen, c.last_error, "
             "(SELECT count(*) FROM fetch_requests f WHERE f.channel = s.channel "
             " AND f.shop = s.shop) AS pending_fetches "
             "FROM shops s LEFT JOIN poll_cursors c ON c.channel = s.channel AND c.shop = s.shop "
             "ORDER BY s.channel, s.shop"),
    ).mappings()
    return [dict(r) for r in rows]
