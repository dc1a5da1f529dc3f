"""Usage in a future window: a covering index of the slivers' times, so Allocate with a window
reads the overlapping slivers by a range scan instead of every row (Capacities.usage_between).

Revision ID: sliver_window_index
Revises: tunnels
Create Date: 2026-12-03
"""
from __future__ import annotations

from alembic import op

revision = 'sliver_window_index'
down_revision = 'tunnels'
branch_labels = None
depends_on = None

COLUMNS = ['expires', 'starts', 'created', 'allocation_state', 'slice_id', 'component_id',
           'version', 'urn']


def upgrade() -> None:
    op.create_index('ix_slivers_window', 'slivers', COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index('ix_slivers_window', table_name='slivers')
