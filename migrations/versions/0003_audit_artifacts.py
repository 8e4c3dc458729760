"""Files stored with an audit: its per-sample diagnostics (``samples/<side>.parquet``).

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-12

A new table only: audits recorded before it simply have no artifacts (the samples endpoint answers
``no_diagnostics`` for them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_audit_artifacts_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_artifacts")),
        sa.UniqueConstraint("audit_id", "name", name=op.f("uq_audit_artifacts_audit_id_name")),
    )


def downgrade() -> None:
    op.drop_table("audit_artifacts")
