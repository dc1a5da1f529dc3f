"""The state columns guarded by the database: a rule table of legal state moves (from
am.states) and a trigger on slivers that refuses any other UPDATE (am.store.state_guard).

Revision ID: sliver_state_guard
Revises: shared_lans
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from am.store import state_guard

revision = 'sliver_state_guard'
down_revision = 'shared_lans'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sliver_transitions',
    sa.Column('from_alloc', sa.String(length=32), nullable=False),
    sa.Column('from_op', sa.String(length=32), nullable=False),
    sa.Column('to_alloc', sa.String(length=32), nullable=False),
    sa.Column('to_op', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('from_alloc', 'from_op', 'to_alloc', 'to_op',
                            name=op.f('pk_sliver_transitions'))
    )
    bind = op.get_bind()
    state_guard.sync(bind)
    for statement in state_guard.create_trigger_sql(bind.dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in state_guard.drop_trigger_sql(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('sliver_transitions')
