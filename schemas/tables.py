"""Postgres projection tables (SQLAlchemy 2); Alembic migrations are generated from these."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class OrderRow(Base):
    """One row per canonical order: the latest known state, plus the full document."""

    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, index=True)
    shop: Mapped[str] = mapped_column(Text)
    native_id: Mapped[str] = mapped_column(Text)
    native_status: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, index=True)
    status_at: Mapped[datetime] = mapped_column(TZ, doc="event time of the last status change")
    created_at: Mapped[datetime] = mapped_column(TZ)
    paid_at: Mapped[datetime | None] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ, doc="channel's own last-modified time")
    currency: Mapped[str] = mapped_column(Text)
    paid_amount: Mapped[Decimal] = mapped_column(Numeric)
    paid_cny: Mapped[Decimal] = mapped_column(Numeric)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB, doc="canonical order as last mapped")
    hold: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    duplicate_of: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    recorded_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class OrderLineRow(Base):
    """Lines of the latest known version of an order."""

    __tablename__ = "order_lines"
    order_id: Mapped[str] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str | None] = mapped_column(Text, index=True)
    channel_sku_id: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric)
    line_total: Mapped[Decimal] = mapped_column(Numeric)


class OrderEventRow(Base):
    """An order's history; (order_id, event_key) makes every recorded step idempotent."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[str] = mapped_column(Text, index=True)
    event_key: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(TZ)
    recorded_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    __table_args__ = (UniqueConstraint("order_id", "event_key"),)


class DeadLetterRow(Base):
    """Every input a stage refused, with the reason and the original bytes."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    stage: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    original: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    replays: Mapped[int] = mapped_column(Integer, server_default=text("0"),
                                         doc="times `orderhub dlq replay` sent it back")
    replayed_at: Mapped[datetime | None] = mapped_column(TZ)
    __table_args__ = (UniqueConstraint("stage", "topic", "partition", "offset"),)


class ConsumerOffsetRow(Base):
    """Tracking: the next offset each consumer group will process, written with its effects."""

    __tablename__ = "consumer_offsets"
    group_id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class AcceptedOrderRow(Base):
    """Dedup's guarantee: one row per canonical id ever accepted (unique constraint = the PK)."""

    __tablename__ = "accepted_orders"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    first_digest: Mapped[bytes] = mapped_column(
        LargeBinary, doc="first 16 bytes of the first version's sha256 (dedup.process)")
    accepted_at: Mapped[datetime] = mapped_column(TZ)
    first_delivery: Mapped[bytes | None] = mapped_column(
        LargeBinary, doc="8-byte hash of the first version's delivery id: its replay re-emits, "
                         "another delivery drops; NULL: unknown (rows from before deliveries)")


class WarehouseRow(Base):
    """A place that ships orders."""

    __tablename__ = "warehouses"
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    province: Mapped[str] = mapped_column(Text)
    city: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    address: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[Decimal | None] = mapped_column(Numeric, doc="unset: the city's centre")
    longitude: Mapped[Decimal | None] = mapped_column(Numeric)
    carriers: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class StockRow(Base):
    """Shared stock per (warehouse, SKU); available never goes below zero."""

    __tablename__ = "stock"
    warehouse: Mapped[str] = mapped_column(ForeignKey("warehouses.code"), primary_key=True)
    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    available: Mapped[int] = mapped_column(Integer)
    safety_stock: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    defective: Mapped[int] = mapped_column(Integer, server_default=text("0"),
                                           doc="returned units graded B: not sellable")
    low: Mapped[bool] = mapped_column(server_default=text("false"),
                                      doc="below safety stock: one alert per crossing")
    __table_args__ = (
        CheckConstraint("defective >= 0", name="defective_not_negative"),
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("on_hand = reserved + available", name="on_hand_balances"),
    )


class AllocationRow(Base):
    """A reservation of one order line in one warehouse; the key makes a replay reserve nothing."""

    __tablename__ = "allocations"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    warehouse: Mapped[str] = mapped_column(ForeignKey("warehouses.code"), primary_key=True)
    sku: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    reserved_at: Mapped[datetime] = mapped_column(TZ)
    shipped_at: Mapped[datetime | None] = mapped_column(
        TZ, doc="set when the shipment is confirmed: the reservation became an on-hand decrement")
    carrier: Mapped[str | None] = mapped_column(Text)
    waybill: Mapped[str | None] = mapped_column(Text)


class NotificationRow(Base):
    """The send log: claimed before the provider call, marked sent after; one per key."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[str] = mapped_column(Text, index=True)
    event: Mapped[str] = mapped_column(Text, doc="the trigger: paid, allocated, shipped, ...")
    channel: Mapped[str] = mapped_column(Text, doc="the configured channel: buyer, sms, ...")
    state: Mapped[str] = mapped_column(Text, doc="pending | sending | sent | failed | skipped")
    message: Mapped[str] = mapped_column(Text)
    claimed_at: Mapped[datetime] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    provider: Mapped[str | None] = mapped_column(
        Text, doc="aliyun_sms | wechat_subscribe | wechat_template | webhook | log")
    target: Mapped[str | None] = mapped_column(Text, doc="phone, openid or URL (fulfilment data)")
    template: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    idempotency_key: Mapped[str] = mapped_column(
        Text, unique=True, doc="sent as Aliyun OutId, WeChat client_msg_id, webhook event id")
    event_at: Mapped[datetime | None] = mapped_column(TZ)
    due_at: Mapped[datetime | None] = mapped_column(TZ, doc="not before (quiet hours, backoff)")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_until: Mapped[datetime | None] = mapped_column(TZ)
    last_error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    provider_ref: Mapped[str | None] = mapped_column(Text, doc="BizId, msgid")
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    emitted_at: Mapped[datetime | None] = mapped_column(TZ, doc="BuyerNotified produced")
    __table_args__ = (
        UniqueConstraint("order_id", "event", "channel"),
        Index("ix_notifications_due", "due_at",
              postgresql_where=text("state IN ('pending', 'sending')")),
        Index("ix_notifications_unemitted", "id",
              postgresql_where=text("emitted_at IS NULL AND state IN ('sent', 'failed', "
                                    "'skipped')")),
    )


Index("ix_orders_status_paid_at", OrderRow.status, OrderRow.paid_at)
# The KPI queries' time ranges (runtime/kpi.py; migration 0008).
Index("ix_orders_created_at", OrderRow.created_at)
Index("ix_orders_paid_at", OrderRow.paid_at)
Index("ix_allocations_shipped_at", AllocationRow.shipped_at,
      postgresql_where=AllocationRow.shipped_at.isnot(None))


class ShopRow(Base):
    """A shop orderhub pulls from: credentials are names of environment variables, never values."""

    __tablename__ = "shops"
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    shop: Mapped[str] = mapped_column(Text, primary_key=True)
    credentials: Mapped[dict[str, str]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), comment="credential name -> env variable name"
    )
    options: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    poll_interval_s: Mapped[Decimal] = mapped_column(Numeric, server_default=text("60"))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    __table_args__ = (CheckConstraint("poll_interval_s > 0", name="poll_interval_positive"),)


class PollCursorRow(Base):
    """Where a shop's pull resumes: everything modified before `position` was produced."""

    __tablename__ = "poll_cursors"
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    shop: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[datetime] = mapped_column(TZ)
    orders_seen: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class PushDeliveryRow(Base):
    """A push (webhook or message frame) already produced: a redelivery with its id does nothing."""

    __tablename__ = "push_deliveries"
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(Text, primary_key=True)
    shop: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(Text)
    orders: Mapped[int] = mapped_column(Integer)
    status_changes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class FetchRequestRow(Base):
    """An order a push only notified about; its shop's poller fetches it whole, then deletes it."""

    __tablename__ = "fetch_requests"
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    shop: Mapped[str] = mapped_column(Text, primary_key=True)
    native_id: Mapped[str] = mapped_column(Text, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class FingerprintRow(Base):
    """Dedup's suspect guarantee: every first sighting, queried by (key, event time) window,
    pruned by event time after ORDERHUB_DEDUP__FINGERPRINT_RETENTION_S.

    No primary-key index (about 60 MB at 1M orders): one row per order is
    guaranteed by writing it only in the transaction that claimed the order's
    accepted_orders row."""

    __tablename__ = "dedup_fingerprints"
    order_id: Mapped[str] = mapped_column(Text)
    key: Mapped[bytes] = mapped_column(
        LargeBinary, doc="first 16 bytes of sha256 of region + merchant SKUs x quantities")
    event_at: Mapped[datetime] = mapped_column(TZ, doc="paid_at, else created_at")
    paid_cny: Mapped[Decimal] = mapped_column(Numeric)
    phone_tail: Mapped[str | None] = mapped_column(Text)
    name_mark: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    __table_args__ = (
        Index("ix_dedup_fingerprints_key_event_at", "key", "event_at"),
        # On an expression only the prune uses: on plain event_at the planner also took it for
        # the window query, 3x slower than the key index at 100k-150k rows (bench/dedup_state).
        Index("ix_dedup_fingerprints_event_at_brin", text("(event_at AT TIME ZONE 'UTC')"),
              postgresql_using="brin"),
    )
    __mapper_args__ = {"primary_key": [order_id]}  # for the ORM only: no constraint


class ReviewRow(Base):
    """The review queue: suspected duplicates a person releases or cancels."""

    __tablename__ = "review_queue"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    matched_order_id: Mapped[str] = mapped_column(Text, index=True)
    matched_fields: Mapped[list[str]] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default=text("'open'"), index=True)
    raised_at: Mapped[datetime] = mapped_column(TZ)
    decided_at: Mapped[datetime | None] = mapped_column(TZ)
    decided_by: Mapped[str | None] = mapped_column(Text)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("state IN ('open', 'released', 'cancelled')", name="state_known"),
    )


class AllocationDecisionRow(Base):
    """Why an order went where it went: the rule and every candidate weighed."""

    __tablename__ = "allocation_decisions"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    decided_at: Mapped[datetime] = mapped_column(TZ)


class ApprovalRow(Base):
    """Orders waiting for a manager, with their stock already reserved."""

    __tablename__ = "approvals"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    paid_cny: Mapped[Decimal] = mapped_column(Numeric)
    reasons: Mapped[list[str]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(Text, server_default=text("'open'"), index=True)
    raised_at: Mapped[datetime] = mapped_column(TZ)
    decided_at: Mapped[datetime | None] = mapped_column(TZ)
    decided_by: Mapped[str | None] = mapped_column(Text)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("state IN ('open', 'approved', 'rejected')", name="state_known"),
    )


class ReturnRow(Base):
    """A refund or return after shipment, from request to QC grade."""

    __tablename__ = "returns"
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    state: Mapped[str] = mapped_column(Text, server_default=text("'requested'"), index=True)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, doc="warehouse, sku, quantity")
    requested_at: Mapped[datetime] = mapped_column(TZ)
    received_at: Mapped[datetime | None] = mapped_column(TZ)
    graded_at: Mapped[datetime | None] = mapped_column(TZ)
    graded_by: Mapped[str | None] = mapped_column(Text)
    grade: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("state IN ('requested', 'received', 'graded')", name="state_known"),
        CheckConstraint("grade IS NULL OR grade IN ('A', 'B', 'C')", name="grade_known"),
    )


class StockMovementRow(Base):
    """The stock ledger: every change of on-hand or defective units, once (event_key)."""

    __tablename__ = "stock_movements"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_key: Mapped[str] = mapped_column(Text, unique=True)
    warehouse: Mapped[str] = mapped_column(Text)
    sku: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    on_hand_delta: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    defective_delta: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    order_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
