"""Stitching: VLAN tags held per hop of a stitched link's path (am.store.stitch_tags).

Revision ID: stitch_tags
Revises: h18_windows
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'stitch_tags'
down_revision = 'h18_windows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stitch_tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hop', sa.String(length=512), nullable=False),
    sa.Column('tag', sa.Integer(), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.Column('hop_name', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'],
                            name=op.f('fk_stitch_tags_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stitch_tags')),
    sa.UniqueConstraint('hop', 'tag', name=op.f('uq_stitch_tags_hop_tag'))
    )
    op.create_index(op.f('ix_stitch_tags_sliver_id'), 'stitch_tags', ['sliver_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_stitch_tags_sliver_id'), table_name='stitch_tags')
    op.drop_table('stitch_tags')
