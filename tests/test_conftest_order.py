"""tests/conftest.py's LONGEST_FIRST names test files that exist (a renamed file would silently lose its place)."""

import os

from tests.conftest import LONGEST_FIRST

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_longest_first_names_existing_files():
    missing = [path for path in LONGEST_FIRST if not os.path.isfile(os.path.join(REPO, path))]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that are gone: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
