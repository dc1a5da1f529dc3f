"""Advance reservations: a sliver's window (starts, waiting, auto_provision), holds over time
with an exclusion constraint on PostgreSQL, and an index for the window capacity check.

PostgreSQL: two holds conflict when their keys are equal, their times overlap and not both
are shared. Expressed with built-in range types only (no btree_gist): the key as a one-point
int8range, the holder as the sliver's own point when shared and the whole line when not, and
tsrange(starts, ends) (naive UTC, half-open, so adjacent windows do not overlap).

Revision ID: h18_windows
Revises: h18_update
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'h18_windows'
down_revision = 'h18_update'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('slivers') as batch:
        batch.add_column(sa.Column('starts', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('waiting', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('auto_provision', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_index(op.f('ix_reservations_component_id_resource'), 'reservations',
                    ['component_id', 'resource'])
    op.create_table('holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('token', sa.String(length=255), nullable=False),
    sa.Column('key', sa.BigInteger(), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('starts', sa.DateTime(), nullable=False),
    sa.Column('ends', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'], name=op.f('fk_holds_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holds'))
    )
    op.create_index(op.f('ix_holds_key_starts'), 'holds', ['key', 'starts'])
    op.create_index(op.f('ix_holds_sliver_id'), 'holds', ['sliver_id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "ALTER TABLE holds ADD CONSTRAINT ex_holds_no_overlap EXCLUDE USING gist ("
            "int8range(key, key, '[]') WITH &&, "
            "(CASE WHEN shared THEN int8range(sliver_id, sliver_id, '[]') "
            "ELSE int8range(NULL, NULL) END) WITH &&, "
            "tsrange(starts, ends) WITH &&)")


def downgrade() -> None:
    op.drop_index(op.f('ix_holds_sliver_id'), table_name='holds')
    op.drop_index(op.f('ix_holds_key_starts'), table_name='holds')
    op.drop_table('holds')
    op.drop_index(op.f('ix_reservations_component_id_resource'), table_name='reservations')
    with op.batch_alter_table('slivers') as batch:
        batch.drop_column('auto_provision')
        batch.drop_column('waiting')
        batch.drop_column('starts')
