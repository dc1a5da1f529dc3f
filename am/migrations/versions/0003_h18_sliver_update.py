"""Pending updates: an Update of a provisioned sliver keeps its new spec here until Provision
commits it or `pending_until` passes (then the reaper reverts it).

Revision ID: h18_update
Revises: 0002
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'h18_update'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('slivers') as batch:
        batch.add_column(sa.Column('pending', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('pending_until', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('slivers') as batch:
        batch.drop_column('pending_until')
        batch.drop_column('pending')
