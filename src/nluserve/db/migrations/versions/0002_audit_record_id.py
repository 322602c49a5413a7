"""Audit rows keyed by a server-made record id; the client's request id is no longer unique.

A client chooses its X-Request-ID. With that as the unique key, a tenant reusing one id made
every later call vanish from the audit (inserts ignore duplicates), so usage undercounted.
The table is rebuilt (copy, drop, rename) because SQLite cannot drop an unnamed constraint in
place; existing rows keep their request id as record id.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
COLUMNS = (
    "id, request_id, ts, tenant_id, key_id, route, model, task, n_texts, chars, status, "
    "latency_ms, text"
)


def _audit_table(name: str, record_id: bool) -> None:
    extra = (
        [sa.Column("record_id", sa.String(128), nullable=False, unique=True)] if record_id else []
    )
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *extra,
        sa.Column("request_id", sa.String(128), nullable=False, unique=not record_id),
        sa.Column("ts", TS, nullable=False),
        sa.Column("tenant_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("n_texts", sa.Integer, nullable=False),
        sa.Column("chars", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
    )


def _rebuild(record_id: bool) -> None:
    _audit_table("audit_rebuild", record_id)
    if record_id:
        op.execute(
            f"INSERT INTO audit_rebuild (record_id, {COLUMNS}) SELECT request_id, {COLUMNS} FROM audit"
        )
    else:  # keep one row per request id, as the old unique key demands
        op.execute(
            f"INSERT INTO audit_rebuild ({COLUMNS}) SELECT {COLUMNS} FROM audit "
            "WHERE id IN (SELECT MIN(id) FROM audit GROUP BY request_id)"
        )
    op.drop_index("ix_audit_tenant_ts", "audit")
    if not record_id:
        op.drop_index("ix_audit_request_id", "audit")
    op.drop_table("audit")
    op.rename_table("audit_rebuild", "audit")
    op.create_index("ix_audit_tenant_ts", "audit", ["tenant_id", "ts"])
    if record_id:
        op.create_index("ix_audit_request_id", "audit", ["request_id"])
    if op.get_bind().dialect.name == "postgresql":
        # The copied ids must not collide with the ones the sequence hands out next.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('audit', 'id'), "
            "COALESCE((SELECT MAX(id) FROM audit), 0) + 1, false)"
        )


def upgrade() -> None:
    _rebuild(record_id=True)


def downgrade() -> None:
    _rebuild(record_id=False)
