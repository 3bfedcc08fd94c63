import pytest

from offers import selectors


@pytest.fixture(autouse=True)
def _fresh_offer_spec_cache():
    """Definitions are cached per process by (offer id, updated_at); tests that change restrictions
    behind the services' back must not see an earlier test's or step's spec."""
    selectors._DEFINITION_CACHE.clear()
    yield
    selectors._DEFINITION_CACHE.clear()
