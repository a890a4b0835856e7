"""retention: when each job's documents, recipient and raw payloads were purged, and
job_documents indexed by sha256

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KINDS = ("documents", "recipient", "payloads")


def upgrade() -> None:
    op.create_index(op.f("ix_job_documents_sha256"), "job_documents", ["sha256"], unique=False)
    for kind in KINDS:
        op.add_column(
            "jobs", sa.Column(f"{kind}_purged_at", sa.DateTime(timezone=True), nullable=True)
        )
        # Only the jobs still to purge: the purge's scan never grows with the purged.
        op.create_index(
            f"ix_jobs_{kind}_unpurged",
            "jobs",
            ["finished_at"],
            postgresql_where=sa.text(f"{kind}_purged_at IS NULL"),
            sqlite_where=sa.text(f"{kind}_purged_at IS NULL"),
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_job_documents_sha256"), table_name="job_documents")
    for kind in KINDS:
        op.drop_index(f"ix_jobs_{kind}_unpurged", table_name="jobs")
        with op.batch_alter_table("jobs") as batch:
            batch.drop_column(f"{kind}_purged_at")
