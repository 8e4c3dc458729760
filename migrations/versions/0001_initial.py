"""Initial schema: projects, datasets, audits, metric_values.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written by hand; tests/db/test_migrations.py checks it against auditor.db.models with compare_metadata.
Plain ``sa.DateTime(timezone=True)`` / ``sa.JSON`` here: the models' UTCDateTime / StrictJSON decorate
them in Python only and render the same DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AUDIT_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_datasets_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint(
            "project_id",
            "fingerprint",
            "reference",
            name=op.f("uq_datasets_project_id_fingerprint_reference"),
        ),
    )
    op.create_table(
        "audits",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("real_dataset_id", sa.Integer(), nullable=True),
        sa.Column("synthetic_dataset_id", sa.Integer(), nullable=True),
        sa.Column("holdout_dataset_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("extractor", sa.String(length=200), nullable=False),
        sa.Column("protocol_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("parent_audit_id", sa.String(length=32), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("report_data", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "state IN ({})".format(", ".join(f"'{state}'" for state in AUDIT_STATES)),
            name=op.f("ck_audits_state"),
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_audits_project_id_projects")),
        sa.ForeignKeyConstraint(
            ["real_dataset_id"], ["datasets.id"], name=op.f("fk_audits_real_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["synthetic_dataset_id"], ["datasets.id"], name=op.f("fk_audits_synthetic_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["holdout_dataset_id"], ["datasets.id"], name=op.f("fk_audits_holdout_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["parent_audit_id"],
            ["audits.id"],
            name=op.f("fk_audits_parent_audit_id_audits"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
    )
    op.create_index(op.f("ix_audits_state"), "audits", ["state"])
    op.create_index(op.f("ix_audits_protocol_fingerprint"), "audits", ["protocol_fingerprint"])
    op.create_index(op.f("ix_audits_parent_audit_id"), "audits", ["parent_audit_id"])
    op.create_index(op.f("ix_audits_created_at"), "audits", ["created_at"])
    op.create_index(op.f("ix_audits_project_id_created_at"), "audits", ["project_id", "created_at"])
    op.create_table(
        "metric_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_metric_values_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_values")),
        # Also serves lookups by audit_id (its leading column): no separate index.
        sa.UniqueConstraint("audit_id", "metric", name=op.f("uq_metric_values_audit_id_metric")),
    )
    op.create_index(op.f("ix_metric_values_metric"), "metric_values", ["metric"])


def downgrade() -> None:
    op.drop_index(op.f("ix_metric_values_metric"), table_name="metric_values")
    op.drop_table("metric_values")
    op.drop_index(op.f("ix_audits_project_id_created_at"), table_name="audits")
    op.drop_index(op.f("ix_audits_created_at"), table_name="audits")
    op.drop_index(op.f("ix_audits_parent_audit_id"), table_name="audits")
    op.drop_index(op.f("ix_audits_protocol_fingerprint"), table_name="audits")
    op.drop_index(op.f("ix_audits_state"), table_name="audits")
    op.drop_table("audits")
    op.drop_table("datasets")
    op.drop_table("projects")
