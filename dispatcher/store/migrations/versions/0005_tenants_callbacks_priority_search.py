"""tenants and their keys, outbound callbacks, priority lanes, metadata search

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_endpoints",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_endpoints")),
    )
    op.create_index(
        op.f("ix_callback_endpoints_tenant_id"), "callback_endpoints", ["tenant_id"], unique=False
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("send_rate", sa.Float(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("callback_secret", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"], unique=False)
    op.create_table(
        "callback_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=True),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_callback_deliveries_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_deliveries")),
    )
    op.create_index(
        "ix_callback_deliveries_endpoint_id_created_at",
        "callback_deliveries",
        ["endpoint_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_callback_deliveries_job_id"), "callback_deliveries", ["job_id"], unique=False
    )
    op.create_index(
        "ix_callback_deliveries_state_next_attempt_at",
        "callback_deliveries",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "ix_callback_deliveries_tenant_id_created_at",
        "callback_deliveries",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_tags_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "key", name=op.f("pk_job_tags")),
    )
    op.create_index("ix_job_tags_key_value", "job_tags", ["key", "value"], unique=False)
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["callback_deliveries.id"],
            name=op.f("fk_callback_attempts_delivery_id_callback_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    op.create_index(
        op.f("ix_callback_attempts_delivery_id"), "callback_attempts", ["delivery_id"], unique=False
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("priority", sa.String(length=8), nullable=False, server_default="normal")
        )
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.create_index(
            "ix_jobs_state_priority_next_attempt_at", ["state", "priority", "next_attempt_at"]
        )
        batch.create_index("ix_jobs_tenant_id_created_at", ["tenant_id", "created_at"])
    with op.batch_alter_table("status_events") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=64), nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(length=32), nullable=True))
    _tag_existing_jobs()


def _tag_existing_jobs() -> None:
    """Index the metadata of the jobs already stored, so a search finds them too."""
    connection = op.get_bind()
    tags = sa.table("job_tags", sa.column("job_id"), sa.column("key"), sa.column("value"))
    rows = connection.execute(sa.text("SELECT id, metadata FROM jobs"))
    while chunk := rows.fetchmany(10_000):
        pairs: list[dict[str, object]] = []
        for job_id, metadata in chunk:
            values = json.loads(metadata) if isinstance(metadata, str) else metadata or {}
            pairs.extend(
                {"job_id": job_id, "key": str(k)[:64], "value": str(v)[:255]}
                for k, v in values.items()
            )
        if pairs:
            connection.execute(sa.insert(tags), pairs)


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("tenant_id")
    with op.batch_alter_table("status_events") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_tenant_id_created_at")
        batch.drop_index("ix_jobs_state_priority_next_attempt_at")
        batch.drop_column("callback_url")
        batch.drop_column("priority")
        batch.drop_column("tenant_id")
    op.drop_index(op.f("ix_callback_attempts_delivery_id"), table_name="callback_attempts")
    op.drop_table("callback_attempts")
    op.drop_index("ix_job_tags_key_value", table_name="job_tags")
    op.drop_table("job_tags")
    op.drop_index("ix_callback_deliveries_tenant_id_created_at", table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_state_next_attempt_at", table_name="callback_deliveries")
    op.drop_index(op.f("ix_callback_deliveries_job_id"), table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_endpoint_id_created_at", table_name="callback_deliveries")
    op.drop_table("callback_deliveries")
    op.drop_index(op.f("ix_api_keys_tenant_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
    op.drop_index(op.f("ix_callback_endpoints_tenant_id"), table_name="callback_endpoints")
    op.drop_table("callback_endpoints")
