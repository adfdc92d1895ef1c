"""The tutorial notebooks: committed outputs are clean, and every notebook runs.

* Fast tier: each committed notebook is valid nbformat, was executed top to
  bottom in full mode by ``notebooks/execute.py`` (execution counts 1..N, in
  order, with outputs and plots, no errors), holds no path of the machine that
  ran it, and imports only mmzoo's public API.
* Slow tier: each notebook executes with nbclient in quick mode
  (``MMZOO_QUICK=1``, kernel ``python3``, cwd and ``MMZOO_NOTEBOOK_DIR`` a
  temporary directory) and fails on any cell error.
"""

from __future__ import annotations

import ast
import os
import re

import nbformat
import pytest

from tests.test_readme import python_warnings

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = [
    "01_classification",
    "02_image_text_matching",
    "03_captioning",
    "04_export_and_serving",
    "05_bring_your_own_data",
    "06_pretrained_towers",
]
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root\b)")
# The public API a notebook may import from (README.md, DESIGN.md).
PUBLIC_MODULES = {
    "mmzoo",
    "mmzoo.data",
    "mmzoo.training",
    "mmzoo.metrics",
    "mmzoo.metrics.retrieval",
    "mmzoo.metrics.captioning",
    "mmzoo.metrics.classification",
    "mmzoo.matching",
    "mmzoo.evaluation",
    "mmzoo.evaluation.retrieval",
    "mmzoo.evaluation.captioning",
    "mmzoo.datasets",
    "mmzoo.datasets.shapes",
    "mmzoo.export",
    "mmzoo.serving",
}


def _path(name):
    return os.path.join(NOTEBOOK_DIR, name + ".ipynb")


def _read(name):
    return nbformat.read(_path(name), as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _output_texts(output):
    if output.output_type == "stream":
        yield output.text
    elif output.output_type == "error":
        yield output.evalue
        yield from output.traceback
    else:
        for mime, value in output.get("data", {}).items():
            if not mime.startswith("image/") and isinstance(value, str):
                yield value


def test_every_notebook_is_listed():
    found = sorted(n[: -len(".ipynb")] for n in os.listdir(NOTEBOOK_DIR) if n.endswith(".ipynb"))
    assert found == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_was_executed_in_full(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert nb.metadata.get("mmzoo", {}).get("mode") == "full", "commit the output of `python notebooks/execute.py`"
    cells = _code_cells(nb)
    assert cells, f"{name} has no code cells"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{name}: cells not executed in order: {counts}"
    with_outputs = [c for c in cells if c.outputs]
    # Almost every cell shows something; a few define functions or servers only.
    assert len(with_outputs) >= 0.75 * len(cells), f"{name}: {len(cells) - len(with_outputs)} cells without outputs"
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name} has error outputs"
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, f"{name} has no matplotlib plot"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_hold_no_machine_paths(name):
    nb = _read(name)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                match = MACHINE_PATH.search(text)
                assert match is None, f"{name} cell {index}: {text[max(0, match.start() - 60):match.end() + 60]!r}"


def _warnings_shown(nb):
    """Python warnings and TensorFlow logger warnings (``WARNING:tensorflow:...``) in the outputs."""
    return [line for c in _code_cells(nb) for o in c.outputs for t in _output_texts(o)
            for line in python_warnings(t) + [x for x in t.splitlines() if x.startswith("WARNING:tensorflow:")]]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_show_no_python_warning_and_none_is_silenced(name):
    # A notebook shows what a person running its code sees: no Keras or mmzoo warning hidden by a blanket
    # filter, and none shown (filters name the one warning they hide).
    nb = _read(name)
    assert not _warnings_shown(nb), f"{name}: {_warnings_shown(nb)[:3]}"
    source = "\n".join(c.source for c in _code_cells(nb))
    assert 'filterwarnings("ignore")' not in source, name
    assert "get_logger().setLevel" not in source, name  # nor TensorFlow's logger turned down


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_only_the_public_api(name):
    nb = _read(name)
    imported = set()
    for cell in _code_cells(nb):
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mmzoo":
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.split(".")[0] == "mmzoo")
    assert "mmzoo" in imported
    assert imported <= PUBLIC_MODULES, f"{name} imports non-public modules: {sorted(imported - PUBLIC_MODULES)}"
    assert "tests" not in {m.split(".")[0] for m in imported}


def test_notebooks_honour_quick_mode_and_the_work_dir():
    for name in NOTEBOOKS:
        source = "\n".join(c.source for c in _code_cells(_read(name)))
        assert 'os.environ.get("MMZOO_QUICK"' in source, name
        assert 'os.environ.get("MMZOO_NOTEBOOK_DIR")' in source, name


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("MMZOO_QUICK", "1")
    monkeypatch.setenv("MMZOO_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.chdir(tmp_path)
    nb = _read(name)
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    cells = _code_cells(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    first = "".join(o.get("text", "") for o in cells[0].outputs)
    assert "mode: quick" in first
    assert not _warnings_shown(nb), f"{name}: {_warnings_shown(nb)[:3]}"
    written = os.listdir(tmp_path)
    assert written, "the notebook wrote nothing under MMZOO_NOTEBOOK_DIR"
