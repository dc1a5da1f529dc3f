from tests.store.dbs import _pg_store, store  # noqa: F401  (fixtures)
