"""The bad-input suite (issue 14): every test here is marked `bad_input`, so `pytest -m bad_input` runs it alone
and prints how many cases it has and how long they took."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/bad_inputs/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.bad_input)
