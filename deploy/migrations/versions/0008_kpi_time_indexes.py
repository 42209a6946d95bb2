"""indexes for the KPI queries' time ranges: orders by created_at and paid_at, shipped lines

The KPI collector refreshes every 15 s (`orderhub stage kpi`, `orderhub status`). Without these,
each refresh scanned every order and every allocation: 3 sequential scans of `orders` and one of
`allocations` (BENCHMARKS.md, bench.kpi).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 05:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_orders_created_at', 'orders', ['created_at'], unique=False)
    op.create_index('ix_orders_paid_at', 'orders', ['paid_at'], unique=False)
    op.create_index('ix_allocations_shipped_at', 'allocations', ['shipped_at'], unique=False,
                    postgresql_where=sa.text('shipped_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_allocations_shipped_at', table_name='allocations',
                  postgresql_where=sa.text('shipped_at IS NOT NULL'))
    op.drop_index('ix_orders_paid_at', table_name='orders')
    op.drop_index('ix_orders_created_at', table_name='orders')
