"""The reward model's score of each response: responses.reward, nullable (NULL where the evaluation had no
reward model, and for every response stored before this revision until its samples are imported again).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: a plain ALTER TABLE ADD COLUMN on both SQLite and Postgres (batch mode
    # copies no table for it), so existing rows stay as they are.
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("reward", sa.Double(), nullable=True))


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35+) drops a column in place; copying the table instead would drop and
    # recreate `responses`, which the ratings' foreign keys refuse while ratings exist.
    op.drop_column("responses", "reward")
