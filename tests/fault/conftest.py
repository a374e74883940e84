from tests.integration.conftest import client, start_wfray  # noqa: F401  (shared fixtures)
