"""Execute the tutorial notebooks and write them back with their outputs.

    python notebooks/execute.py                 # every notebook, full mode, in place
    python notebooks/execute.py 03_captioning   # one notebook (name or path)
    python notebooks/execute.py --quick --output-dir /tmp/nb   # quick mode, elsewhere

Notebooks run one at a time with nbclient (kernel ``python3``), each in a
fresh temporary directory that is also its ``MMZOO_NOTEBOOK_DIR`` (data, runs
and exports go there, never into the repository). Full mode unsets
``MMZOO_QUICK``; ``--quick`` sets ``MMZOO_QUICK=1``.

The committed outputs are what this script wrote, never typed by hand. Before
writing, outputs are normalised so they hold no path of the machine that ran
them: the notebook directory becomes ``$MMZOO_NOTEBOOK_DIR``, the repository
``<repo>``, the Python prefix ``<python>``, the home directory ``~`` and the
temporary directory ``<tmp>``; TensorFlow's C++ log lines (``I0000 12:00:00
... file.cc:31] ...``: timestamps and process ids) are dropped. A path that
survives normalisation stops the script with an error (nothing is written).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root\b|/private/var/|/var/folders/)")
TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)(\n|$)",
    re.M,
)


def notebook_paths(names=()) -> list[str]:
    """The notebooks named (stem, file name or path), or every ``NN_*.ipynb`` here."""
    if not names:
        return sorted(
            os.path.join(HERE, n) for n in os.listdir(HERE) if n.endswith(".ipynb") and n[:2].isdigit()
        )
    paths = []
    for name in names:
        candidates = [name, os.path.join(HERE, name), os.path.join(HERE, name + ".ipynb")]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise SystemExit(f"No notebook {name!r} (looked in {HERE}).")
        paths.append(os.path.abspath(found))
    return paths


def _replacements(work_dir):
    pairs = [
        (work_dir, "$MMZOO_NOTEBOOK_DIR"),
        (os.path.realpath(work_dir), "$MMZOO_NOTEBOOK_DIR"),
        (REPO, "<repo>"),
        (os.path.realpath(REPO), "<repo>"),
        (sys.prefix, "<python>"),
        (sys.base_prefix, "<python>"),
        (os.path.expanduser("~"), "~"),
        (tempfile.gettempdir(), "<tmp>"),
    ]
    # Longest first, so a path inside another one is replaced as a whole.
    pairs = [(a, b) for a, b in pairs if a and a != "/"]
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def normalise_text(text: str, replacements) -> str:
    text = TF_LOG_LINE.sub("", text)
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def normalise_outputs(nb, work_dir) -> list[str]:
    """Normalise every output in place; return the machine paths left over."""
    replacements = _replacements(work_dir)
    leftovers = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = normalise_text(output.text, replacements)
                if not output.text:
                    continue
            elif output.output_type in ("execute_result", "display_data"):
                for mime, value in output.get("data", {}).items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        if isinstance(value, str):
                            output.data[mime] = normalise_text(value, replacements)
            elif output.output_type == "error":
                output.traceback = [normalise_text(t, replacements) for t in output.traceback]
                output.evalue = normalise_text(output.evalue, replacements)
            kept.append(output)
        cell.outputs = kept
        for output in kept:
            text = _output_text(output)
            for match in MACHINE_PATH.finditer(text):
                leftovers.append(f"cell {index}: ...{text[max(0, match.start() - 40):match.end() + 40]!r}...")
    return leftovers


def _output_text(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback) + output.evalue
    return "\n".join(v for k, v in output.get("data", {}).items() if isinstance(v, str) and not k.startswith("image/"))


def execute(path, quick=False, output_dir=None, timeout=900) -> float:
    """Execute ``path``; write the result (in place or under ``output_dir``); return seconds."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    work_dir = tempfile.mkdtemp(prefix="mmzoo_notebook_")
    saved = {k: os.environ.get(k) for k in ("MMZOO_QUICK", "MMZOO_NOTEBOOK_DIR")}
    os.environ["MMZOO_NOTEBOOK_DIR"] = work_dir
    if quick:
        os.environ["MMZOO_QUICK"] = "1"
    else:
        os.environ.pop("MMZOO_QUICK", None)
    start = time.perf_counter()
    try:
        client = NotebookClient(
            nb, kernel_name="python3", timeout=timeout, record_timing=False,
            resources={"metadata": {"path": work_dir}},
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - start
    try:
        leftovers = normalise_outputs(nb, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if leftovers:
        raise SystemExit(f"{os.path.basename(path)}: machine paths left in the outputs:\n" + "\n".join(leftovers))
    nb.metadata["mmzoo"] = {"mode": "quick" if quick else "full"}
    target = os.path.join(output_dir, os.path.basename(path)) if output_dir else path
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, target)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names (default: every NN_*.ipynb here)")
    parser.add_argument("--quick", action="store_true", help="run with MMZOO_QUICK=1")
    parser.add_argument("--output-dir", help="write the executed notebooks here instead of in place")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    for path in notebook_paths(args.notebooks):
        print(f"executing {os.path.basename(path)} ({'quick' if args.quick else 'full'} mode) ...", flush=True)
        seconds = execute(path, quick=args.quick, output_dir=args.output_dir, timeout=args.timeout)
        print(f"  done in {seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
