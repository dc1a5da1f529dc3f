import pytest

from tests.service.harness import Harness
from tests.store.dbs import _pg_store, store  # noqa: F401  (fixtures)


@pytest.fixture
def h(store, tmp_path):
    harness = Harness(store, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def make(store, tmp_path):
    """Harness(store, tmp_path, **kwargs) for tests that need settings or fake keys of their
    own; every one made is closed after the test."""
    made: list[Harness] = []

    def _make(**kwargs) -> Harness:
        made.append(Harness(store, tmp_path, **kwargs))
        return made[-1]
    yield _make
    for h in made:
        h.close()
