"""Waivers: gate rules waived for a project or an audit, with reason, author and expiry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A new table only: verdicts recorded before it waived nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waivers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=True),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_waivers_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_waivers_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waivers")),
    )
    op.create_index(op.f("ix_waivers_audit_id"), "waivers", ["audit_id"])
    op.create_index(op.f("ix_waivers_project_id"), "waivers", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_waivers_project_id"), table_name="waivers")
    op.drop_index(op.f("ix_waivers_audit_id"), table_name="waivers")
    op.drop_table("waivers")
