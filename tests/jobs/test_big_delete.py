"""Delete records the decision in a number of statements that does not grow with the slice
(before: several statements per sliver, 8 ms a sliver, 80 s for 10,000), and the slivers are
gone from Status at once while their delete jobs clean the substrate afterwards."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, func, select

from am.errors import GeniCode, GeniError
from am.service.contract import Options
from am.store import Job
from tests.jobs.conftest import USER, slice_urn
from tests.support import wait_until


@contextmanager
def counted_statements(store):
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def _live(stack, name: str) -> int:
    try:
        return len(stack.status(name))
    except GeniError as exc:
        assert exc.code == GeniCode.SEARCHFAILED   # nothing live left in the slice
        return 0


def _provisioned_slice(stack, name: str, n: int) -> None:
    stack.allocate(name, n=n)
    stack.provision(name)


def test_delete_costs_the_same_statements_for_10_and_60_slivers(stack_factory):
    stack = stack_factory(worker=False, nodes=1, fake={"cpu": 100.0, "memory_mb": 100000.0})
    _provisioned_slice(stack, "small", 10)
    _provisioned_slice(stack, "big", 60)
    costs = {}
    for name in ("small", "big"):
        with counted_statements(stack.store) as seen:
            infos = stack.aggregate.delete(USER, [slice_urn(name)], Options())
        costs[name] = len(seen)
        assert {i.allocation_status for i in infos} == {"geni_unallocated"}
    # 60 slivers: not one statement more than 10 (before: several per sliver)
    assert costs["big"] == costs["small"], costs
    assert _live(stack, "big") == 0 and _live(stack, "small") == 0
    with stack.store.read() as s:
        queued = s.scalar(select(func.count()).select_from(Job)
                          .where(Job.action == "delete", Job.state == "queued"))
    assert queued == 70
    assert all(used < 1e-6 for *_, used in stack.store.capacity_rows())


def test_the_delete_jobs_clean_the_substrate(stack_factory):
    stack = stack_factory(nodes=2)
    _provisioned_slice(stack, "gone", 6)
    stack.wait_ops("gone", {"geni_ready"})
    assert len(stack.fake.observed()) == 6
    stack.aggregate.delete(USER, [slice_urn("gone")], Options())
    assert _live(stack, "gone") == 0   # gone from Status at once
    # and from the substrate soon after
    wait_until(lambda: stack.fake.observed() == [], "an empty substrate", timeout=30)
