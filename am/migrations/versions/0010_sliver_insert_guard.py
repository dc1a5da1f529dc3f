"""A sliver row can only be inserted in a state the state machine starts from: a rule table of
initial states (from am.states) and a trigger on slivers that refuses any other INSERT
(am.store.state_guard).

Revision ID: sliver_insert_guard
Revises: cpu_milli
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from am.store import state_guard

revision = 'sliver_insert_guard'
down_revision = 'cpu_milli'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sliver_initial_states',
    sa.Column('alloc', sa.String(length=32), nullable=False),
    sa.Column('op', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('alloc', 'op', name=op.f('pk_sliver_initial_states'))
    )
    bind = op.get_bind()
    state_guard.sync(bind)
    for statement in state_guard.create_insert_trigger_sql(bind.dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in state_guard.drop_trigger_sql(op.get_bind().dialect.name,
                                                  state_guard.INSERT_TRIGGER):
        op.execute(statement)
    op.drop_table('sliver_initial_states')
