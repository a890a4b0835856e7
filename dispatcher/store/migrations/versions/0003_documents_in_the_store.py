"""documents' bytes in the database (or an object store), not on one host's disk

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Documents an earlier version kept under FAX_HOME/documents are moved into the configured
store by ``faxctl db upgrade`` (on the host that has them), or ``faxctl db
import-documents FOLDER``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_contents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_document_contents")),
    )


def downgrade() -> None:
    op.drop_table("document_contents")
