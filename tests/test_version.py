"""mmzoo/version.py: one version string, the one the package is built with and reports."""

import configparser
import os
import re

import mmzoo
from mmzoo.version import __version__

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_is_a_release_version():
    assert isinstance(__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__), __version__


def test_the_package_and_its_build_read_this_version():
    assert mmzoo.__version__ == __version__
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    assert config["metadata"]["version"] == "attr: mmzoo.version.__version__"
