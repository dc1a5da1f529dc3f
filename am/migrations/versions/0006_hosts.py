"""The site's hosts: heartbeats, load and the components each host owns (am/store/hosts.py).

Revision ID: hosts_heartbeats
Revises: stitch_tags
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'hosts_heartbeats'
down_revision = 'stitch_tags'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hosts',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('heartbeat', sa.DateTime(), nullable=True),
    sa.Column('started', sa.DateTime(), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('load', sa.Float(), nullable=False),
    sa.Column('running_jobs', sa.Integer(), nullable=False),
    sa.Column('components', sa.JSON(), nullable=False),
    sa.Column('down_since', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_hosts'))
    )


def downgrade() -> None:
    op.drop_table('hosts')
