"""`--quick` in the training benchmarks sets smaller defaults; flags given with it still win."""

import pytest

from benchmarks import captioning, retrieval

SCRIPTS = {"retrieval": retrieval, "captioning": captioning}


@pytest.mark.parametrize("name, full, quick", [
    ("retrieval", dict(epochs=16, train_images=200000, preset="shapes", batch_size=256),
     dict(epochs=6, train_images=600, preset="tiny", batch_size=64)),
    ("captioning", dict(epochs=10, preset="shapes", batch_size=64), dict(epochs=6, preset="tiny", batch_size=32)),
])
def test_quick_sets_defaults_and_explicit_flags_win(name, full, quick):
    parse_args = SCRIPTS[name].parse_args
    for argv, expected in (([], full), (["--quick"], quick)):
        args = parse_args(argv)
        assert {k: getattr(args, k) for k in expected} == expected, argv
    args = parse_args(["--quick", "--epochs", "2", "--batch-size", "16"])
    assert (args.epochs, args.batch_size, args.preset) == (2, 16, "tiny")
