"""Service state: audit progress, heartbeat, attempts, cancellation, idempotency; events, API keys, policies.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

New NOT NULL columns on ``audits`` carry a server default so existing rows (audits recorded by the CLI
before the service existed) get a value; the JSON columns are nullable instead (a JSON server default
does not compare portably), and NULL reads as "nothing recorded".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audits", sa.Column("progress", sa.JSON(), nullable=True))
    op.add_column("audits", sa.Column("source", sa.String(length=16), nullable=False, server_default="cli"))
    op.add_column("audits", sa.Column("worker", sa.String(length=200), nullable=True))
    op.add_column("audits", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("audits", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "audits",
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("audits", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.add_column("audits", sa.Column("artifacts", sa.JSON(), nullable=True))
    op.create_index(
        op.f("ix_audits_project_id_idempotency_key"),
        "audits",
        ["project_id", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_audit_events_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_audit_id_id"), "audit_events", ["audit_id", "id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_keys_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_keys_secret_sha256")),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_policies_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint(
            "project_id", "name", "version", name=op.f("uq_policies_project_id_name_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("policies")
    op.drop_table("api_keys")
    op.drop_index(op.f("ix_audit_events_audit_id_id"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_audits_project_id_idempotency_key"), table_name="audits")
    # SQLite drops columns by rebuilding the table: batch mode does that on SQLite, plain ALTER elsewhere.
    with op.batch_alter_table("audits") as batch:
        for column in (
            "artifacts",
            "idempotency_key",
            "cancel_requested",
            "attempts",
            "heartbeat_at",
            "worker",
            "source",
            "progress",
        ):
            batch.drop_column(column)
