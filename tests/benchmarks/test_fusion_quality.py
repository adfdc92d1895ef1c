"""benchmarks/fusion_quality.py measures notebook 01's budget: the two plans stay in step."""

import json
import os

from benchmarks import fusion_quality

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _notebook_plan(quick):
    with open(os.path.join(REPO, "notebooks", "01_classification.ipynb"), encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("PLAN"))
    namespace = {"QUICK": quick}
    exec(source, namespace)  # noqa: S102 - the notebook's own plan cell
    return namespace["PLAN"], namespace["PRESET"], namespace["IMAGE_SIZE"]


def test_benchmark_plan_is_notebook_01s():
    module = fusion_quality
    plan, preset, image_size = _notebook_plan(quick=False)
    assert plan == module.NOTEBOOK_PLAN
    args = module.parse_args([])
    assert (args.num_train, args.num_test, args.epochs_by_kind) == (plan["num_train"], plan["num_test"], plan["epochs"])
    assert (args.preset, args.image_size) == (preset, image_size)
    assert set(module.NOTEBOOK_ENTRIES) <= {name for name, _ in module.ENTRIES}
