"""Capacities in whole units: rows of the old `cpu` resource (cores, as floats) become
`cpu_milli` (thousandths of a core), in the capacity table and in live reservations, so a
database from before the change keeps counting what its live slivers hold.

A component that already has a `cpu_milli` row (the new code ran against the old database
before this migration) keeps it, with the old row's capacity and use added in; its `cpu` row
goes.

Revision ID: cpu_milli
Revises: sliver_state_guard
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'cpu_milli'
down_revision = 'sliver_state_guard'
branch_labels = None
depends_on = None

_CAPACITY = sa.table('capacity', sa.column('component_id', sa.String),
                     sa.column('resource', sa.String), sa.column('capacity', sa.Float),
                     sa.column('used', sa.Float))
_RESERVATIONS = sa.table('reservations', sa.column('id', sa.Integer),
                         sa.column('resource', sa.String), sa.column('amount', sa.Float))


def _milli(cores: float | None) -> float:
    return float(round(float(cores or 0.0) * 1000))


def upgrade() -> None:
    conn = op.get_bind()
    c, r = _CAPACITY.c, _RESERVATIONS.c
    for rid, amount in conn.execute(sa.select(r.id, r.amount).where(r.resource == 'cpu')).all():
        conn.execute(sa.update(_RESERVATIONS).where(r.id == rid)
                     .values(resource='cpu_milli', amount=_milli(amount)))
    old = conn.execute(sa.select(c.component_id, c.capacity, c.used)
                       .where(c.resource == 'cpu')).all()
    new = {cid: (cap, used) for cid, cap, used in conn.execute(
        sa.select(c.component_id, c.capacity, c.used).where(c.resource == 'cpu_milli'))}
    for cid, cap, used in old:
        conn.execute(sa.delete(_CAPACITY).where(c.component_id == cid, c.resource == 'cpu'))
        if cid in new:
            have_cap, have_used = new[cid]
            total_used = float(have_used or 0.0) + _milli(used)
            conn.execute(sa.update(_CAPACITY)
                         .where(c.component_id == cid, c.resource == 'cpu_milli')
                         .values(capacity=max(float(have_cap or 0.0), _milli(cap), total_used),
                                 used=total_used))
        else:
            conn.execute(sa.insert(_CAPACITY).values(component_id=cid, resource='cpu_milli',
                                                     capacity=_milli(cap), used=_milli(used)))


def downgrade() -> None:
    conn = op.get_bind()
    c, r = _CAPACITY.c, _RESERVATIONS.c
    conn.execute(sa.update(_RESERVATIONS).where(r.resource == 'cpu_milli')
                 .values(resource='cpu', amount=r.amount / 1000.0))
    conn.execute(sa.update(_CAPACITY).where(c.resource == 'cpu_milli')
                 .values(resource='cpu', capacity=c.capacity / 1000.0, used=c.used / 1000.0))
