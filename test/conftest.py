"""Shared pytest setup: the ``slow`` marker is opt-in with ``--runslow``."""

import pytest


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='run tests marked slow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'):
        return
    skip = pytest.mark.skip(reason='slow: pass --runslow to run')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)
