import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist each test process takes its share of the cores for torch's intra-op threads:
    N processes with N threads each would spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


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
