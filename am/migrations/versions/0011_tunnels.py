"""Cross-host links: the VXLAN id (VNI) each tunnel link holds, site-wide unique
(am.store.tunnels).

Revision ID: tunnels
Revises: sliver_insert_guard
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'tunnels'
down_revision = 'sliver_insert_guard'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tunnels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vni', sa.Integer(), nullable=False),
    sa.Column('slice_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['slice_id'], ['slices.id'], name=op.f('fk_tunnels_slice_id_slices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tunnels')),
    sa.UniqueConstraint('slice_id', 'client_id', name=op.f('uq_tunnels_slice_id_client_id')),
    sa.UniqueConstraint('vni', name=op.f('uq_tunnels_vni'))
    )


def downgrade() -> None:
    op.drop_table('tunnels')
