import pytest

from tests.service.harness import Harness
from tests.store.dbs import _pg_store, store  # noqa: F401  (fixtures)


@pytest.fixture
def h(store, tmp_path):
    harness = Harness(store, tmp_path)
    yield harness
    harness.close()
