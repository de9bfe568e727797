import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (paper-scale runs, kill -9 of every experiment)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow (paper scale, or minutes of kill -9 runs); run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
