"""The running-AM fixtures of the client tests (a fresh AM per module)."""
from tests.client.conftest import am_env, dev_authority  # noqa: F401 - fixtures
