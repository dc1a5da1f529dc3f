"""Shared LANs: LAN slivers shared under a token, and the link slivers that joined them
(am.store.shared_lans).

Revision ID: shared_lans
Revises: hosts_heartbeats
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'shared_lans'
down_revision = 'hosts_heartbeats'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shared_lans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=255), nullable=False),
    sa.Column('lan_sliver_id', sa.Integer(), nullable=False),
    sa.Column('lan_client_id', sa.String(length=255), nullable=False),
    sa.Column('slice_urn', sa.String(length=512), nullable=False),
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('revoked', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['lan_sliver_id'], ['slivers.id'],
                            name=op.f('fk_shared_lans_lan_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shared_lans'))
    )
    op.create_index(op.f('ix_shared_lans_lan_sliver_id'), 'shared_lans', ['lan_sliver_id'])
    op.create_index('ix_shared_lans_token_active', 'shared_lans', ['token'], unique=True,
                    sqlite_where=sa.text('revoked IS NULL'),
                    postgresql_where=sa.text('revoked IS NULL'))
    op.create_table('shared_lan_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shared_lan_id', sa.Integer(), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['shared_lan_id'], ['shared_lans.id'],
                            name=op.f('fk_shared_lan_members_shared_lan_id_shared_lans')),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'],
                            name=op.f('fk_shared_lan_members_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shared_lan_members')),
    sa.UniqueConstraint('sliver_id', name=op.f('uq_shared_lan_members_sliver_id'))
    )
    op.create_index(op.f('ix_shared_lan_members_shared_lan_id'), 'shared_lan_members',
                    ['shared_lan_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_shared_lan_members_shared_lan_id'), table_name='shared_lan_members')
    op.drop_table('shared_lan_members')
    op.drop_index('ix_shared_lans_token_active', table_name='shared_lans')
    op.drop_index(op.f('ix_shared_lans_lan_sliver_id'), table_name='shared_lans')
    op.drop_table('shared_lans')
