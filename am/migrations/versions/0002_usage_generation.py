"""The usage generation counter: one row, bumped by every transaction that changes capacity,
reservations, claims or the set of live slivers, so cached advertisements can be validated
with one primary-key read across processes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('usage_generation',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_usage_generation_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_generation'))
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table('usage_generation')
