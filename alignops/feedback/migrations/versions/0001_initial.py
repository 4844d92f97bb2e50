"""Initial schema: annotators, prompts, responses, rankings, ratings.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stamp() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "annotators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        _stamp(),
        sa.CheckConstraint("role IN ('labeler', 'admin')", name=op.f("ck_annotators_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotators")),
        sa.UniqueConstraint("name", name=op.f("uq_annotators_name")),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _stamp(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
        sa.UniqueConstraint("text_sha256", name=op.f("uq_prompts_text_sha256")),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model_uri", sa.String(length=512), nullable=False),
        sa.Column("sample_id", sa.String(length=256), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _stamp(),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("fk_responses_prompt_id_prompts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_responses")),
        sa.UniqueConstraint("model_uri", "sample_id", name=op.f("uq_responses_model_uri_sample_id")),
    )
    op.create_index(op.f("ix_responses_prompt_id"), "responses", ["prompt_id"])
    op.create_table(
        "rankings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("responses", sa.JSON(), nullable=False),
        sa.Column("ranking", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("client_token", sa.String(length=200), nullable=False),
        sa.Column("supersedes", sa.Integer(), nullable=True),
        _stamp(),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"], name=op.f("fk_rankings_annotator_id_annotators")),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("fk_rankings_prompt_id_prompts")),
        sa.ForeignKeyConstraint(["supersedes"], ["rankings.id"], name=op.f("fk_rankings_supersedes_rankings")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rankings")),
        sa.UniqueConstraint("client_token", name=op.f("uq_rankings_client_token")),
        sa.UniqueConstraint("supersedes", name=op.f("uq_rankings_supersedes")),
    )
    op.create_index(op.f("ix_rankings_annotator_id"), "rankings", ["annotator_id"])
    op.create_index(op.f("ix_rankings_prompt_id"), "rankings", ["prompt_id"])
    op.create_index(
        "uq_rankings_first", "rankings", ["annotator_id", "prompt_id"], unique=True,
        sqlite_where=sa.text("supersedes IS NULL"), postgresql_where=sa.text("supersedes IS NULL"),
    )  # fmt: skip
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("helpful", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("harmless", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("client_token", sa.String(length=200), nullable=False),
        sa.Column("supersedes", sa.Integer(), nullable=True),
        _stamp(),
        sa.CheckConstraint("helpful BETWEEN 1 AND 5", name=op.f("ck_ratings_helpful")),
        sa.CheckConstraint("correct BETWEEN 1 AND 5", name=op.f("ck_ratings_correct")),
        sa.CheckConstraint("harmless BETWEEN 1 AND 5", name=op.f("ck_ratings_harmless")),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"], name=op.f("fk_ratings_annotator_id_annotators")),
        sa.ForeignKeyConstraint(["response_id"], ["responses.id"], name=op.f("fk_ratings_response_id_responses")),
        sa.ForeignKeyConstraint(["supersedes"], ["ratings.id"], name=op.f("fk_ratings_supersedes_ratings")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("client_token", name=op.f("uq_ratings_client_token")),
        sa.UniqueConstraint("supersedes", name=op.f("uq_ratings_supersedes")),
    )
    op.create_index(op.f("ix_ratings_annotator_id"), "ratings", ["annotator_id"])
    op.create_index(op.f("ix_ratings_response_id"), "ratings", ["response_id"])
    op.create_index(
        "uq_ratings_first", "ratings", ["annotator_id", "response_id"], unique=True,
        sqlite_where=sa.text("supersedes IS NULL"), postgresql_where=sa.text("supersedes IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    for table in ("ratings", "rankings", "responses", "prompts", "annotators"):
        op.drop_table(table)  # their indexes go with them
