"""benchmarks/export_time.py: a one-round run follows the report contract and counts the traces."""

from benchmarks import export_time, run


def test_one_round_follows_the_contract_and_traces_each_endpoint_once():
    report, results = export_time.main(["--entries", "gated_classifier", "--rounds", "1"])
    run.check_report(report, "export_time")
    res = results["gated_classifier"]
    assert res["traces"] == {"keras": {"serving_default": 2, "preprocessed": 2},
                             "mmzoo": {"serving_default": 1, "preprocessed": 1}}
    assert res["keras_s"] > 0 and res["mmzoo_s"] > 0 and res["export_s"] > 0
    assert [row["value"] for row in report["rows"]][1] == "1 / 2"
