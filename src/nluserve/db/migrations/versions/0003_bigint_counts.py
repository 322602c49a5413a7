"""64-bit audit ids and daily quotas on PostgreSQL.

``Integer`` is int4 on PostgreSQL: the audit id sequence (SERIAL) stops at 2,147,483,647 rows,
after which every audit insert fails, and a daily quota above that (the API and the CLI accept
up to 10¹²) could not be stored. Both become BIGINT, and the audit id sequence becomes a bigint
sequence (its maximum follows). On SQLite nothing changes: INTEGER there is already 64-bit, and
``audit.id`` must stay ``INTEGER PRIMARY KEY`` (the rowid) to keep numbering itself.

Changing a column's type rewrites the table on PostgreSQL under an exclusive lock, so on a large
audit table this migration takes a while; run ``nluserve migrate`` in a quiet hour.

Other integer columns stay int4 on purpose: ``tenants.burst`` is at most 10⁹ (tenancy/limits.py),
and an audit row's ``n_texts``, ``chars`` and ``status`` describe one call, far below 2³¹.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The sequence behind audit.id: 0002 rebuilt the table, so it is named audit_rebuild_id_seq
# on databases that went through that migration; look it up rather than guess.
_ALTER_SEQUENCE = """
DO $$ BEGIN
  EXECUTE format('ALTER SEQUENCE %s AS {kind}', pg_get_serial_sequence('audit', 'id'));
END $$
"""


def _widen(old: type[sa.Integer], new: type[sa.Integer], kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    if kind == "integer":  # narrowing: the sequence first, while the column still holds it
        op.execute(_ALTER_SEQUENCE.format(kind=kind))
    op.alter_column("audit", "id", type_=new(), existing_type=old(), existing_nullable=False)
    op.alter_column(
        "tenants", "quota_daily", type_=new(), existing_type=old(), existing_nullable=False
    )
    if kind == "bigint":
        op.execute(_ALTER_SEQUENCE.format(kind=kind))


def upgrade() -> None:
    _widen(sa.Integer, sa.BigInteger, "bigint")


def downgrade() -> None:
    # Fails (and changes nothing) once an id or a quota no longer fits in int4.
    _widen(sa.BigInteger, sa.Integer, "integer")
