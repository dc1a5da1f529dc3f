"""Initial schema: slices, slivers, capacity, reservations, claims, jobs, leases, keys, audit.

The audit log is append-only: triggers reject UPDATE and DELETE on both SQLite and PostgreSQL.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.Column('caller_urn', sa.String(length=512), nullable=False),
    sa.Column('tool_urn', sa.String(length=512), nullable=True),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_ts'), 'audit_log', ['ts'], unique=False)
    op.create_table('capacity',
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('capacity', sa.Float(), nullable=False),
    sa.Column('used', sa.Float(), nullable=False),
    sa.CheckConstraint('used <= capacity + 0.000001', name=op.f('ck_capacity_used_within_capacity')),
    sa.CheckConstraint('used >= -0.000001', name=op.f('ck_capacity_used_not_negative')),
    sa.PrimaryKeyConstraint('component_id', 'resource', name=op.f('pk_capacity'))
    )
    op.create_table('slices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('urn', sa.String(length=512), nullable=False),
    sa.Column('urn_key', sa.String(length=512), nullable=False),
    sa.Column('incarnation', sa.Integer(), nullable=False),
    sa.Column('owner_urn', sa.String(length=512), nullable=False),
    sa.Column('shutdown', sa.Boolean(), nullable=False),
    sa.Column('shutdown_at', sa.DateTime(), nullable=True),
    sa.Column('shutdown_by', sa.String(length=512), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slices')),
    sa.UniqueConstraint('urn_key', 'incarnation', name=op.f('uq_slices_urn_key_incarnation'))
    )
    op.create_table('slivers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('urn', sa.String(length=512), nullable=False),
    sa.Column('slice_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('driver', sa.String(length=64), nullable=False),
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('sliver_type', sa.String(length=128), nullable=True),
    sa.Column('allocation_state', sa.String(length=32), nullable=False),
    sa.Column('operational_state', sa.String(length=32), nullable=True),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('resource_status', sa.Text(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('element_xml', sa.Text(), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['slice_id'], ['slices.id'], name=op.f('fk_slivers_slice_id_slices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slivers')),
    sa.UniqueConstraint('urn', name=op.f('uq_slivers_urn'))
    )
    op.create_index(op.f('ix_slivers_allocation_state_expires'), 'slivers', ['allocation_state', 'expires'], unique=False)
    op.create_index(op.f('ix_slivers_component_id'), 'slivers', ['component_id'], unique=False)
    op.create_index(op.f('ix_slivers_slice_id'), 'slivers', ['slice_id'], unique=False)
    op.create_table('user_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slice_id', sa.Integer(), nullable=False),
    sa.Column('user_urn', sa.String(length=512), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['slice_id'], ['slices.id'], name=op.f('fk_user_keys_slice_id_slices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_keys'))
    )
    op.create_index(op.f('ix_user_keys_slice_id_user_urn'), 'user_keys', ['slice_id', 'user_urn'], unique=False)
    op.create_table('claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('token', sa.String(length=255), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'], name=op.f('fk_claims_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claims')),
    sa.UniqueConstraint('component_id', 'token', name=op.f('uq_claims_component_id_token'))
    )
    op.create_index(op.f('ix_claims_sliver_id'), 'claims', ['sliver_id'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('lease_owner', sa.String(length=255), nullable=True),
    sa.Column('heartbeat', sa.DateTime(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'], name=op.f('fk_jobs_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index(op.f('ix_jobs_sliver_id'), 'jobs', ['sliver_id'], unique=False)
    op.create_index(op.f('ix_jobs_state'), 'jobs', ['state'], unique=False)
    op.create_table('reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.Column('component_id', sa.String(length=512), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'], name=op.f('fk_reservations_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservations'))
    )
    op.create_index(op.f('ix_reservations_sliver_id'), 'reservations', ['sliver_id'], unique=False)
    _audit_triggers()
    op.create_table('sliver_leases',
    sa.Column('sliver_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sliver_id'], ['slivers.id'], name=op.f('fk_sliver_leases_sliver_id_slivers')),
    sa.PrimaryKeyConstraint('sliver_id', name=op.f('pk_sliver_leases'))
    )


def _audit_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
    else:
        op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table('sliver_leases')
    op.drop_index(op.f('ix_reservations_sliver_id'), table_name='reservations')
    op.drop_table('reservations')
    op.drop_index(op.f('ix_jobs_state'), table_name='jobs')
    op.drop_index(op.f('ix_jobs_sliver_id'), table_name='jobs')
    op.drop_table('jobs')
    op.drop_index(op.f('ix_claims_sliver_id'), table_name='claims')
    op.drop_table('claims')
    op.drop_index(op.f('ix_user_keys_slice_id_user_urn'), table_name='user_keys')
    op.drop_table('user_keys')
    op.drop_index(op.f('ix_slivers_slice_id'), table_name='slivers')
    op.drop_index(op.f('ix_slivers_component_id'), table_name='slivers')
    op.drop_index(op.f('ix_slivers_allocation_state_expires'), table_name='slivers')
    op.drop_table('slivers')
    op.drop_table('slices')
    op.drop_table('capacity')
    op.drop_index(op.f('ix_audit_log_ts'), table_name='audit_log')
    op.drop_table('audit_log')
