"""Run every benchmark script and rewrite the tables in ``benchmarks/README.md``.

Each ``benchmarks/*.py`` script (except this one and ``_*``) runs in its own
subprocess, as ``python -m benchmarks.NAME`` from the repository root (with
``--quick`` when given). By contract its LAST stdout line is one JSON
object::

    {"benchmark": "<script stem>", "command": "<command to reproduce>",
     "rows": [{"figure": "...", "goal": "... or null", "value": "...", "met": true|false|null}, ...]}

The rows of each script replace the block between its markers in the README::

    <!-- BEGIN benchmark NAME -->
    ...generated table...
    <!-- END benchmark NAME -->

and each block records the date, the machine (cores, CPU model, GPU if any)
and the command that produced it, so a block refreshed with ``--only`` says
when and where it was measured. A script with no block yet gets a new section
(above the ``<!-- benchmarks: new sections -->`` marker, or at the end).
A script that fails (non-zero exit, or no valid JSON last line) still gets a
block: its row says ``failed`` with the tail of its error output; the other
scripts still run, and this command exits with status 1.

    python -m benchmarks.run --quick                    # every script, quick mode
    python -m benchmarks.run --only serving retrieval   # a subset, full budgets
    python -m benchmarks.run --quick --dry-run          # print the tables, write nothing
    python -m benchmarks.run --only retrieval --script-args "retrieval=--dual-encoder runs/clip.keras"

``--script-args NAME=ARGS`` passes more arguments to one script (split like a
shell line); they show in the block's commands, so a table measured on a
reused model says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW_SECTIONS_MARKER = "<!-- benchmarks: new sections -->"
ROW_KEYS = ("figure", "goal", "value", "met")


class ContractError(ValueError):
    """A script's output does not follow the benchmark JSON contract."""


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN benchmark {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- END benchmark {name} -->"


# ----------------------------------------------------------------- discovery
def discover(bench_dir: str) -> list[str]:
    """Stems of the benchmark scripts in ``bench_dir`` (sorted; not run.py, not ``_*``)."""
    this = os.path.splitext(os.path.basename(__file__))[0]
    return sorted(
        f[:-3]
        for f in os.listdir(bench_dir)
        if f.endswith(".py") and not f.startswith("_") and f[:-3] != this and os.path.isfile(os.path.join(bench_dir, f))
    )


def select(available: list[str], only) -> list[str]:
    """``only`` (stems or file names) checked against ``available``; all when empty."""
    if not only:
        return list(available)
    names = []
    for item in only:
        stem = os.path.splitext(os.path.basename(item))[0]
        if stem not in available:
            raise ValueError(f"Unknown benchmark {item!r}; choose from {available}. Received: --only {item}")
        if stem not in names:
            names.append(stem)
    return names


# ------------------------------------------------------------------- parsing
def last_json_line(stdout: str):
    """The JSON value on the last non-empty line of ``stdout`` (any JSON; ``check_report`` checks it)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ContractError("no output: the last stdout line must be the JSON report")
    last = lines[-1].strip()
    try:
        return json.loads(last)
    except json.JSONDecodeError as error:
        raise ContractError(f"last stdout line is not JSON ({error.msg}). Received: {last[:200]!r}") from None


def parse_report(stdout: str, name: str | None = None) -> dict:
    """The JSON object on the last non-empty line of ``stdout``, checked against the contract."""
    return check_report(last_json_line(stdout), name)


def contract_report(name: str, rows: list, argv=None) -> dict:
    """Script ``benchmarks.NAME``'s JSON report ``{"benchmark", "command", "rows"}``, checked against
    the contract: ``command`` is the one that ran it (``argv``: its arguments; default ``sys.argv[1:]``).
    Each script prints it as its last stdout line."""
    command = shlex.join(["python", "-m", f"benchmarks.{name}", *(sys.argv[1:] if argv is None else argv)])
    return check_report({"benchmark": name, "command": command, "rows": rows}, name)


def check_report(report, name: str | None = None) -> dict:
    """``report`` itself when it follows the contract (``name``: the script stem it must give)."""
    if not isinstance(report, dict):
        raise ContractError(f"the JSON report must be an object. Received: {type(report).__name__}")
    missing = [k for k in ("benchmark", "command", "rows") if k not in report]
    if missing:
        raise ContractError(f"the JSON report misses {missing}. Received keys: {sorted(report)}")
    if name is not None and report["benchmark"] != name:
        raise ContractError(f"'benchmark' must be the script stem {name!r}. Received: benchmark={report['benchmark']!r}")
    if not isinstance(report["command"], str) or not report["command"].strip():
        raise ContractError(f"'command' must be a non-empty string. Received: command={report['command']!r}")
    rows = report["rows"]
    if not isinstance(rows, list) or not rows:
        raise ContractError(f"'rows' must be a non-empty list. Received: rows={rows!r}"[:300])
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ContractError(f"rows[{i}] must be an object. Received: {row!r}"[:300])
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ContractError(f"rows[{i}] misses {missing}. Received keys: {sorted(row)}")
        if not isinstance(row["figure"], str) or not row["figure"].strip():
            raise ContractError(f"rows[{i}].figure must be a non-empty string. Received: {row['figure']!r}")
        if row["goal"] is not None and not isinstance(row["goal"], str):
            raise ContractError(f"rows[{i}].goal must be a string or null. Received: {row['goal']!r}")
        if not isinstance(row["value"], str):
            raise ContractError(f"rows[{i}].value must be a string. Received: {row['value']!r}")
        if row["met"] not in (True, False, None):
            raise ContractError(f"rows[{i}].met must be true, false or null. Received: {row['met']!r}")
    return report


def error_tail(stderr: str, stdout: str = "", lines: int = 3, chars: int = 300) -> str:
    """The last few meaningful lines of a failed script's output (TF log noise dropped)."""
    noise = re.compile(r"^(I|W)\d{4} |^WARNING: All log messages|^To enable the following instructions")
    for text in (stderr, stdout):
        kept = [line.strip() for line in text.splitlines() if line.strip() and not noise.match(line.strip())]
        if kept:
            tail = " / ".join(kept[-lines:])
            return tail if len(tail) <= chars else "..." + tail[-chars:]
    return "(no output)"


# ------------------------------------------------------------------- running
def run_script(name: str, bench_dir: str, quick: bool, timeout: float | None = None, echo=True,
               extra_args=()) -> dict:
    """Run one script (with ``extra_args`` after ``--quick``); ``{"name", "ok", "report" | "error", "seconds", "command"}``.

    The script runs as a module of the package ``bench_dir`` is (``python -m benchmarks.NAME``),
    from the folder that holds ``bench_dir`` (the repository root for ``benchmarks/``).
    """
    root, package = os.path.split(os.path.abspath(bench_dir))
    module = f"{package}.{name}"
    args = (["--quick"] if quick else []) + list(extra_args)
    argv = [sys.executable, "-m", module] + args
    command = shlex.join(["python", "-m", module, *args])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    out_lines = []
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                encoding="utf-8", errors="replace")
        def pump():  # stream progress while keeping every line
            for line in proc.stdout:
                out_lines.append(line)
                if echo:
                    print(f"  [{name}] {line.rstrip()}", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        reader.join()
        proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    stdout = "".join(out_lines)
    result = {"name": name, "seconds": time.perf_counter() - start, "command": command}
    if timed_out:
        return {**result, "ok": False, "error": f"timed out after {timeout:g}s; " + error_tail(stderr, stdout)}
    if proc.returncode != 0:
        return {**result, "ok": False, "error": f"exit code {proc.returncode}: " + error_tail(stderr, stdout)}
    try:
        report = parse_report(stdout, name)
    except ContractError as error:
        return {**result, "ok": False, "error": f"bad report: {error}"}
    return {**result, "ok": True, "report": report}


# ------------------------------------------------------------------ machine
def machine_info(with_gpu: bool = True) -> dict:
    """Cores, CPU model (``/proc/cpuinfo``) and GPUs (``tf.config``, names when known)."""
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = []
    if with_gpu:
        try:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            for device in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(device)
                gpus.append(details.get("device_name") or device.name)
        except Exception:  # noqa: BLE001 (no TensorFlow: report no GPU)
            gpus = []
    return {"cores": os.cpu_count(), "cpu": cpu or "unknown CPU", "gpus": gpus}


def describe_machine(machine: dict) -> str:
    gpus = ", ".join(machine["gpus"]) if machine["gpus"] else "no GPU"
    return f"{machine['cores']} cores, {machine['cpu']}, {gpus}"


# ---------------------------------------------------------------- rendering
def _cell(text) -> str:
    """A markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _met(value) -> str:
    return {True: "yes", False: "**no**", None: ""}[value]


def render_block(result: dict, date: str, machine: str, run_command: str) -> str:
    """The markdown that goes between a script's markers."""
    name = result["name"]
    lines = [f"Measured {date} on {machine}, by `{run_command}`."]
    if result["ok"]:
        report = result["report"]
        lines.append(f"Script command: `{report['command']}` ({result['seconds']:.0f} s).")
        lines += ["", "| figure | goal | value | met |", "|---|---|---|---|"]
        for row in report["rows"]:
            goal = row["goal"] if row["goal"] is not None else ""
            lines.append(f"| {_cell(row['figure'])} | {_cell(goal)} | {_cell(row['value'])} | {_met(row['met'])} |")
    else:
        lines.append(f"Script command: `{result['command']}` ({result['seconds']:.0f} s).")
        lines += ["", "| figure | goal | value | met |", "|---|---|---|---|"]
        lines.append(f"| `{name}` | | **failed**: {_cell(result['error'])} | |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block of ``name`` replaced by ``body`` (a new section when absent)."""
    begin, end = begin_marker(name), end_marker(name)
    block = f"{begin}\n{body}\n{end}"
    i, j = text.find(begin), text.find(end)
    if (i < 0) != (j < 0) or (i >= 0 and j < i):
        raise ValueError(f"Unbalanced markers for benchmark {name!r} in the README: need {begin} then {end}")
    if text.count(begin) > 1 or text.count(end) > 1:
        raise ValueError(f"Benchmark {name!r} has more than one block in the README ({begin})")
    if i >= 0:
        return text[:i] + block + text[j + len(end):]
    section = f"## `{name}`\n\n{block}\n\n"
    k = text.find(NEW_SECTIONS_MARKER)
    if k >= 0:
        return text[:k] + section + text[k:]
    return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"


def update_readme(path: str, results: list[dict], date: str, machine: str, run_command: str) -> str:
    """Rewrite the blocks of ``results`` in the README at ``path`` (atomically); return the new text."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = "# Benchmarks\n\n" + NEW_SECTIONS_MARKER + "\n"
    for result in results:
        text = replace_block(text, result["name"], render_block(result, date, machine, run_command))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return text


# ---------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every script")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts (stems, e.g. serving)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per script (default: none)")
    p.add_argument("--dry-run", action="store_true", help="print the tables, do not write the README")
    p.add_argument("--bench-dir", default=HERE, help=argparse.SUPPRESS)
    p.add_argument("--readme", default=None, help="README to rewrite (default: benchmarks/README.md)")
    p.add_argument("--script-args", action="append", default=[], metavar="NAME=ARGS",
                   help="more arguments for one script, after NAME= as one shell-quoted string (repeatable)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    bench_dir = os.path.abspath(args.bench_dir)
    readme = args.readme or os.path.join(bench_dir, "README.md")
    try:
        names = select(discover(bench_dir), args.only)
        extra = {}
        for item in args.script_args:
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"--script-args takes NAME=ARGS. Received: --script-args {item!r}")
            stem = select(names, [name])[0]  # a script that will run
            extra[stem] = extra.get(stem, []) + shlex.split(text)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = ["python", "-m", "benchmarks.run"] + (["--quick"] if args.quick else []) + (
        ["--only", *names] if args.only else []
    )
    for item in args.script_args:
        shown += ["--script-args", item]
    run_command = shlex.join(shown)
    machine = describe_machine(machine_info())
    date = datetime.date.today().isoformat()
    print(f"{run_command}: {len(names)} script(s) on {machine}", flush=True)

    results = []
    for name in names:
        print(f"== {name}", flush=True)
        result = run_script(name, bench_dir, args.quick, args.timeout, extra_args=extra.get(name, ()))
        status = "ok" if result["ok"] else f"FAILED ({result['error']})"
        print(f"== {name}: {status} in {result['seconds']:.0f} s", flush=True)
        results.append(result)

    print()
    for result in results:
        print(f"### {result['name']}\n{render_block(result, date, machine, run_command)}\n")
    if not args.dry_run:
        update_readme(readme, results, date, machine, run_command)
        print(f"rewrote {len(results)} block(s) in {os.path.relpath(readme)}")
    failed = [r["name"] for r in results if not r["ok"]]
    if failed:
        print(f"{len(failed)} of {len(results)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
