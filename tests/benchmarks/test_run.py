"""benchmarks/run.py: the JSON contract, the README blocks, failures, --only/--quick, one real run."""

import json
import os
import shutil
import textwrap

import pytest

from benchmarks import run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _report(name="fake", rows=None, command=None):
    rows = rows if rows is not None else [{"figure": "speed-up", "goal": ">= 2x", "value": "3.10x", "met": True}]
    return {"benchmark": name, "command": command or f"python -m benchmarks.{name}", "rows": rows}


# ------------------------------------------------------------------ parsing
def test_parse_report_takes_the_last_non_empty_line():
    stdout = "warming up\n{\"not\": \"the report\"}\nRATIO 3.1x\n" + json.dumps(_report()) + "\n\n"
    report = run.parse_report(stdout, "fake")
    assert report["rows"][0]["value"] == "3.10x"
    assert report["command"] == "python -m benchmarks.fake"


@pytest.mark.parametrize(
    "stdout, message",
    [
        ("", "no output"),
        ("RATIO 3x\n", "not JSON"),
        (json.dumps([1, 2]), "must be an object"),
        (json.dumps({"benchmark": "fake", "rows": []}), r"misses \['command'\]"),
        (json.dumps(_report(name="other")), "benchmark='other'"),
        (json.dumps(_report(rows=[])), "non-empty list"),
        (json.dumps(_report(rows=[{"figure": "x", "goal": None, "value": "1"}])), r"rows\[0\] misses \['met'\]"),
        (json.dumps(_report(rows=[{"figure": "x", "goal": None, "value": 1.5, "met": None}])), "value must be a string"),
        (json.dumps(_report(rows=[{"figure": "x", "goal": None, "value": "1", "met": "yes"}])), "met must be true"),
        (json.dumps(_report(rows=[{"figure": "", "goal": None, "value": "1", "met": None}])), "figure must be"),
    ],
    ids=["empty", "not-json", "not-object", "missing-key", "wrong-name", "no-rows", "row-key", "value-type",
         "met-type", "empty-figure"],
)
def test_parse_report_errors_say_what_was_wrong(stdout, message):
    with pytest.raises(run.ContractError, match=message):
        run.parse_report(stdout, "fake")


def test_error_tail_skips_tensorflow_log_noise():
    stderr = (
        "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
        "ValueError: boom\nI0000 00:00:1 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1 cuda.cc:1] Could not find cuda drivers\n"
    )
    assert run.error_tail(stderr) == 'Traceback (most recent call last): / File "x.py", line 3, in <module> / ValueError: boom'
    assert run.error_tail(stderr, lines=1) == "ValueError: boom"
    assert run.error_tail("", "only stdout\n") == "only stdout"
    assert run.error_tail("", "") == "(no output)"
    assert len(run.error_tail("x" * 1000)) == 303


# --------------------------------------------------------------- rendering
def test_render_block_for_a_report_and_a_failure():
    ok = {"name": "fake", "ok": True, "seconds": 12.4, "command": "python -m benchmarks.fake",
          "report": _report(rows=[{"figure": "a | b", "goal": None, "value": "**1.5x**", "met": None},
                                  {"figure": "c", "goal": ">= 2x", "value": "1.9x", "met": False}])}
    text = run.render_block(ok, "2030-01-02", "2 cores, CPU X, no GPU", "python -m benchmarks.run")
    lines = text.splitlines()
    assert lines[0] == "Measured 2030-01-02 on 2 cores, CPU X, no GPU, by `python -m benchmarks.run`."
    assert "`python -m benchmarks.fake` (12 s)" in lines[1]
    assert "| a \\| b |  | **1.5x** |  |" in lines
    assert "| c | >= 2x | 1.9x | **no** |" in lines

    failed = {"name": "fake", "ok": False, "seconds": 1.0, "command": "python -m benchmarks.fake --quick",
              "error": "exit code 1: ValueError: boom\nsecond line"}
    text = run.render_block(failed, "2030-01-02", "m", "c")
    assert "| `fake` | | **failed**: exit code 1: ValueError: boom second line | |" in text.splitlines()


def test_replace_block_keeps_everything_outside_the_markers():
    text = (
        "# B\n\nintro\n\n"
        f"{run.begin_marker('a')}\nold a\n{run.end_marker('a')}\n\nnote on a\n\n"
        f"{run.begin_marker('b')}\nold b\n{run.end_marker('b')}\n\n{run.NEW_SECTIONS_MARKER}\n\n## Notes\nkeep\n"
    )
    new = run.replace_block(text, "a", "NEW A")
    assert f"{run.begin_marker('a')}\nNEW A\n{run.end_marker('a')}" in new
    assert "old a" not in new and "old b" in new
    assert new.replace("NEW A", "old a") == text

    added = run.replace_block(new, "c", "C ROWS")
    head, tail = added.split(run.NEW_SECTIONS_MARKER)
    assert head.endswith(f"## `c`\n\n{run.begin_marker('c')}\nC ROWS\n{run.end_marker('c')}\n\n")
    assert tail == "\n\n## Notes\nkeep\n"

    appended = run.replace_block("# B\n", "c", "C")
    assert appended == f"# B\n\n## `c`\n\n{run.begin_marker('c')}\nC\n{run.end_marker('c')}\n"


def test_replace_block_refuses_broken_markers():
    with pytest.raises(ValueError, match="Unbalanced markers"):
        run.replace_block(f"{run.begin_marker('a')}\nx\n", "a", "y")
    with pytest.raises(ValueError, match="Unbalanced markers"):
        run.replace_block(f"{run.end_marker('a')}\n{run.begin_marker('a')}\n", "a", "y")
    twice = f"{run.begin_marker('a')}\n{run.end_marker('a')}\n" * 2
    with pytest.raises(ValueError, match="more than one block"):
        run.replace_block(twice, "a", "y")


def test_select_and_discover(tmp_path):
    for name in ("b.py", "a.py", "run.py", "_helper.py", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir.py").mkdir()
    assert run.discover(str(tmp_path)) == ["a", "b"]
    assert run.select(["a", "b"], None) == ["a", "b"]
    assert run.select(["a", "b"], ["b.py", "benchmarks/a.py", "b"]) == ["b", "a"]
    with pytest.raises(ValueError, match=r"Unknown benchmark 'zzz'; choose from \['a', 'b'\]"):
        run.select(["a", "b"], ["zzz"])


def test_machine_info_reads_cores_and_cpu_model():
    info = run.machine_info(with_gpu=False)
    assert info["cores"] == os.cpu_count() and info["gpus"] == []
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    assert info["cpu"] == (models[0] if models else "unknown CPU")
    assert run.describe_machine(info).startswith(f"{os.cpu_count()} cores, ")
    assert run.describe_machine({"cores": 8, "cpu": "C", "gpus": ["H100", "H100"]}) == "8 cores, C, H100, H100"


# ------------------------------------------------------- fake scripts, end to end
GOOD = '''
import json, sys
quick = "--quick" in sys.argv[1:]
print("measuring ...")
print(json.dumps({"benchmark": "good", "command": "python -m benchmarks.good" + (" --quick" if quick else ""),
                  "rows": [{"figure": "quick mode", "goal": None, "value": str(quick), "met": None},
                           {"figure": "ratio", "goal": ">= 2x", "value": "2.50x", "met": True}]}))
'''
CRASH = '''
import sys
print("half way")
sys.stderr.write("I0000 00:00:1 port.cc:153] oneDNN noise\\n")
raise ValueError("boom: the data set is missing")
'''
NO_JSON = 'print("RATIO 2.0x")\n'
SLEEPS = 'import time\nprint("sleeping", flush=True)\ntime.sleep(60)\n'


@pytest.fixture
def bench(tmp_path):
    folder = tmp_path / "benchmarks"  # a package, run as python -m benchmarks.NAME from tmp_path
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, code in (("good", GOOD), ("crash", CRASH), ("nojson", NO_JSON), ("run", "raise SystemExit(9)\n")):
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    readme = folder / "README.md"
    readme.write_text(
        "# Benchmarks\n\nhand-written intro\n\n"
        f"## good\n\n{run.begin_marker('good')}\nstale good table\n{run.end_marker('good')}\n\nnote on good\n\n"
        f"## crash\n\n{run.begin_marker('crash')}\nstale crash table\n{run.end_marker('crash')}\n\n"
        f"{run.NEW_SECTIONS_MARKER}\n\n## Notes\n\n- keep me\n"
    )
    return folder, readme


def test_every_script_runs_failures_are_reported_and_the_rest_still_run(bench, capsys):
    folder, readme = bench
    code = run.main(["--bench-dir", str(folder), "--quick"])
    assert code == 1
    text = readme.read_text()
    assert "stale" not in text
    assert "hand-written intro" in text and "note on good" in text and text.endswith("## Notes\n\n- keep me\n")
    good = text[text.index(run.begin_marker("good")):text.index(run.end_marker("good"))]
    assert "by `python -m benchmarks.run --quick`" in good and f"{os.cpu_count()} cores" in good
    assert "Script command: `python -m benchmarks.good --quick`" in good
    assert "| quick mode |  | True |  |" in good and "| ratio | >= 2x | 2.50x | yes |" in good
    crash = text[text.index(run.begin_marker("crash")):text.index(run.end_marker("crash"))]
    assert "**failed**: exit code 1:" in crash and "ValueError: boom: the data set is missing" in crash
    assert "oneDNN" not in crash
    assert "Script command: `python -m benchmarks.crash --quick`" in crash  # how run.py ran it
    # a script without a block gets a new section above the marker; its contract error is shown
    nojson = text[text.index("## `nojson`"):text.index(run.NEW_SECTIONS_MARKER)]
    assert "**failed**: bad report: last stdout line is not JSON" in nojson and "RATIO 2.0x" in nojson
    assert "SystemExit" not in text and "`run`" not in text  # run.py never runs itself
    out, err = capsys.readouterr()
    assert "[good] measuring ..." in out
    assert "2 of 3 benchmark(s) failed: crash, nojson" in err


def test_only_runs_the_named_scripts_and_keeps_other_blocks(bench):
    folder, readme = bench
    assert run.main(["--bench-dir", str(folder), "--only", "good"]) == 0
    text = readme.read_text()
    assert "| quick mode |  | False |  |" in text and "by `python -m benchmarks.run --only good`" in text
    assert "stale crash table" in text and "nojson" not in text
    assert run.main(["--bench-dir", str(folder), "--only", "nope"]) == 2
    assert run.main(["--bench-dir", str(folder), "--only", "crash", "--dry-run"]) == 1
    assert readme.read_text() == text  # a dry run writes nothing


ECHO = '''
import json, shlex, sys
print(json.dumps({"benchmark": "echo", "command": shlex.join(["python", "-m", "benchmarks.echo", *sys.argv[1:]]),
                  "rows": [{"figure": "arguments", "goal": None, "value": repr(sys.argv[1:]), "met": None}]}))
'''


def test_script_args_reach_one_script_and_show_in_the_block(bench):
    folder, readme = bench
    (folder / "echo.py").write_text(textwrap.dedent(ECHO))
    assert run.main(["--bench-dir", str(folder), "--only", "echo", "good", "--script-args",
                     "echo=--dual-encoder 'a b.keras'"]) == 0
    text = readme.read_text()
    echo = text[text.index(run.begin_marker("echo")):text.index(run.end_marker("echo"))]
    assert "| arguments |  | ['--dual-encoder', 'a b.keras'] |  |" in echo
    assert "Script command: `python -m benchmarks.echo --dual-encoder 'a b.keras'`" in echo
    assert "--script-args 'echo=--dual-encoder '\"'\"'a b.keras'\"'\"''`" in echo  # shlex-quoted, as typed
    assert "| quick mode |  | False |  |" in text  # good.py got no extra arguments
    # Arguments for a script that does not run (unknown, or not in --only) are refused before anything runs.
    before = readme.read_text()
    for bad in ("echo=-x", "echo -x"):  # not in --only; no NAME=
        assert run.main(["--bench-dir", str(folder), "--only", "good", "--script-args", bad]) == 2
    assert readme.read_text() == before


def test_a_script_that_hangs_is_killed_at_the_timeout(bench):
    folder, readme = bench
    (folder / "sleeps.py").write_text(SLEEPS)
    assert run.main(["--bench-dir", str(folder), "--only", "sleeps", "good", "--timeout", "5"]) == 1
    text = readme.read_text()
    assert "**failed**: timed out after 5s; sleeping" in text
    assert "| ratio | >= 2x | 2.50x | yes |" in text


# --------------------------------------------------------------- one real run
# One head and 5 hypothesis examples per signature instead of --quick's five heads and 20 (the script alone
# took 52 s on a shared 2-core machine): the sweep of every head is tests/test_robustness.py's, default tier.
SMALLER = "--heads classifier --examples 5"


@pytest.mark.slow
def test_real_quick_run_of_the_fastest_script(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(os.path.join(REPO, "benchmarks", "README.md"), readme)
    code = run.main(["--quick", "--only", "robustness", "--readme", str(readme),
                     "--script-args", f"robustness={SMALLER}"])
    assert code == 0
    text = readme.read_text()
    block = text[text.index(run.begin_marker("robustness")):text.index(run.end_marker("robustness"))]
    assert f"by `python -m benchmarks.run --quick --only robustness --script-args 'robustness={SMALLER}'`" in block
    assert f"`python -m benchmarks.robustness --quick {SMALLER}`" in block
    rows = [line for line in block.splitlines() if line.startswith("| hostile requests tried")]
    assert len(rows) == 1 and rows[0].endswith("| yes |"), rows  # the sweep ran and found no 'other' outcome
    budget = [line for line in block.splitlines() if line.startswith("| same request, time with the budget off / on")]
    assert len(budget) == 1 and budget[0].endswith("| yes |"), budget  # the request budget refused the large images
    original = open(os.path.join(REPO, "benchmarks", "README.md")).read()
    old_block = original[original.index(run.begin_marker("robustness")):original.index(run.end_marker("robustness"))]
    assert text.replace(block, "") == original.replace(old_block, "")  # nothing outside the block changed
