"""exactly once: lost answers, time in state, replayed provider events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET state_changed_at = updated_at")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("state_changed_at", nullable=False)
        batch.create_index("ix_jobs_state_state_changed_at", ["state", "state_changed_at"])
    # Webhook statuses are re-read from the provider now: no event row needs a dedupe key.
    with op.batch_alter_table("status_events") as batch:
        batch.drop_constraint("uq_status_events_dedupe_key", type_="unique")
        batch.drop_column("dedupe_key")
    op.create_table(
        "webhook_events",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_webhook_events")),
    )
    op.create_index(
        op.f("ix_webhook_events_received_at"), "webhook_events", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_events_received_at"), table_name="webhook_events")
    op.drop_table("webhook_events")
    with op.batch_alter_table("status_events") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=128), nullable=True))
        batch.create_unique_constraint("uq_status_events_dedupe_key", ["dedupe_key"])
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_state_state_changed_at")
        batch.drop_column("state_changed_at")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("lost_at")
