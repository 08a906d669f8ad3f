import pytest

from tests.conftest import oracle_available


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    if oracle_available():
        return
    skip = pytest.mark.skip(reason="Pegasus's parsers are not installed "
                                   "(scripts/test.sh installs pegasus-wms 5.1.3)")
    for item in items:
        if "oracle" in item.keywords:
            item.add_marker(skip)
