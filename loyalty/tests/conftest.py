import pytest


@pytest.fixture(params=["one_statement", "step_by_step"])
def ledger_path(request, settings):
    """Run a test on both ledger credit paths: PostgreSQL's single statement and the portable one."""
    settings.LEDGER_SQL_FAST_PATH = request.param == "one_statement"
    return request.param
