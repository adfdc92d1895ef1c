"""`mmzoo evaluate` on matchers: re-ranking with score fusion and querybank normalisation."""

import json

import mmzoo
from mmzoo.cli import main


def _last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


def test_evaluate_matcher_with_querybank_and_fused_reranking(tmp_path, capsys):
    assert main(["data", "--out", str(tmp_path / "test"), "--num-images", "8", "--image-size", "32"]) == 0
    test = capsys.readouterr().out.strip()
    assert main(["data", "--out", str(tmp_path / "bank"), "--num-images", "10", "--image-size", "32",
                 "--seed", "7"]) == 0
    bank = capsys.readouterr().out.strip()
    clip, itm = tmp_path / "clip.keras", tmp_path / "itm.keras"
    mmzoo.build("dual_encoder", preset="tiny").save(clip)
    mmzoo.build("itm_matcher", preset="tiny").save(itm)

    assert main(["evaluate", str(clip), "--data", test, "--querybank", bank, "--querybank-beta", "25",
                 "--rerank-model", str(itm), "--rerank-k", "3", "--rerank-weight", "0"]) == 0
    m = _last_json(capsys.readouterr().out)
    assert m["num_images"] == 8.0
    # Weight 0: the fused order inside the top 3 is the first stage's.
    assert m["reranked_image_to_text_recall@1"] == m["image_to_text_recall@1"]
    # --rerank-fusion log_prob with an enormous weight: the ITM's own order (its probabilities alone).
    alone_args = ["evaluate", str(clip), "--data", test, "--rerank-model", str(itm), "--rerank-k", "3"]
    assert main(alone_args) == 0
    alone = _last_json(capsys.readouterr().out)
    assert main(alone_args + ["--rerank-weight", "1e6", "--rerank-fusion", "log_prob"]) == 0
    gated = _last_json(capsys.readouterr().out)
    assert gated["reranked_image_to_text_mean_rank"] == alone["reranked_image_to_text_mean_rank"]

    assert main(["evaluate", str(clip), "--data", test, "--querybank-beta", "25"]) == 2
    assert "--querybank-beta needs --querybank" in capsys.readouterr().err
    assert main(["evaluate", str(clip), "--data", test, "--rerank-weight", "1"]) == 2
    assert "give --rerank-model" in capsys.readouterr().err
    # A fusion without a weight would change nothing (the ITM alone ranks): refused, not ignored.
    assert main(alone_args + ["--rerank-fusion", "log_prob"]) == 2
    assert "--rerank-fusion log_prob" in capsys.readouterr().err
    # The hard truth gate: threshold 0 accepts every candidate, so the first-stage order stands.
    assert main(alone_args + ["--rerank-threshold", "0"]) == 0
    kept = _last_json(capsys.readouterr().out)
    assert kept["reranked_image_to_text_mean_rank"] == kept["image_to_text_mean_rank"]
    for bad in (alone_args + ["--rerank-threshold", "0.5", "--rerank-weight", "1"],
                ["evaluate", str(clip), "--data", test, "--rerank-threshold", "0.5"]):
        assert main(bad) == 2
        assert "--rerank-threshold gates" in capsys.readouterr().err


def test_rerank_fusion_choices_are_the_library_ones():
    import argparse
    import inspect

    from mmzoo.cli import RERANK_FUSION_DEFAULT, build_parser
    from mmzoo.evaluation.retrieval import evaluate_matcher
    from mmzoo.metrics.retrieval import RERANK_FUSIONS

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in subparsers.choices["evaluate"]._actions if a.dest == "rerank_fusion")
    assert tuple(action.choices) == RERANK_FUSIONS
    # No parser default: `--rerank-fusion` without `--rerank-weight` is refused, and with a weight
    # an absent flag means the library's default fusion.
    assert action.default is None and RERANK_FUSION_DEFAULT == inspect.signature(
        evaluate_matcher).parameters["rerank_fusion"].default


def test_the_cli_module_loads_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, mmzoo.cli; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
