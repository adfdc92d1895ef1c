import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(0)
    yield
    # Without Keras's gc.collect(): a full collection per test cost 0.75 s on average, 1,028 of the
    # default tier's ~2,150 worker-seconds (measured 2026-12-01); Python's own collector frees the
    # models a test leaves behind, at a fraction of that.
    keras.backend.clear_session(free_memory=False)


def pytest_collection_finish(session):
    # What collection imported (TensorFlow, Keras, mmzoo: ~400,000 objects) lives until the end;
    # frozen, no collection walks it again.
    gc.collect()
    gc.freeze()


# The longest test files first (measured with --durations=0 on 2 workers, 2026-12-01: each takes
# 60 s or more of one worker). pytest-xdist hands out files (the default tier's --dist loadfile) and
# tests (the slow tier's --dist worksteal) in collection order, so a long one collected last keeps
# one worker busy while the other idles; started first, the short ones fill in around it.
LONGEST_FIRST = (
    "tests/test_readme.py",
    "tests/benchmarks/test_retrieval_run.py",
    "tests/benchmarks/test_pretrained.py",
    "tests/test_notebooks.py",
    "tests/test_registry.py",
    "tests/export/test_examples.py",
    "tests/test_robustness.py",
    "tests/models/test_captioning.py",
    "tests/training/test_loop.py",
    "tests/test_cli_output.py",
    "tests/training/test_unfreeze_towers.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests, and the other files, keep their order
