"""README.md runs as pasted, stays short, and its links (and docs/'s) resolve.

The convention (README.md, "How to read this README"):

* Every fenced block declares its language: ``python`` and ``bash`` blocks
  run, ``text`` blocks show output or layouts and never run.
* The runnable blocks run in README order in one fresh, empty directory.
  Each ``python`` block runs in a fresh namespace (it has its own imports
  and names, so it can be pasted into a new ``python``); later blocks read
  the files earlier blocks wrote. ``bash`` blocks run with ``bash -e -o
  pipefail`` and the venv's ``bin/`` first on ``PATH``.
* A block directly below ``<!-- readme-test: skip (REASON) -->`` never runs
  (installs, Docker, a running server); one below
  ``<!-- readme-test: slow (REASON) -->`` runs only in the slow tier.
  Both need a reason.

The default-tier test runs every other block in one Python process (so
TensorFlow is imported once for the Python blocks) and fails on the first
block that fails, naming its line in README.md. It took 196 s on a shared
2-core machine under a load average of about 6 (90 s of CPU time, most of
it starting TensorFlow in the `mmzoo` commands and tracing); the slow-tier
test runs the slow block, `mmzoo demo --quick` (3m23s there), the only run
of the quick demo in the test suite: tests/test_demo.py's checks of the
demo's output are made on what that block printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 270  # "about 250", plus the Layout section's one line per package (issue 28)
RUNNABLE = ("python", "bash")
LANGUAGES = RUNNABLE + ("text",)

_FENCE = re.compile(r"^(```+)\s*([^\s`]*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(?:\((.*)\))?\s*-->\s*$")


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the block's first code line in README.md
    language: str
    code: str
    mode: str = "run"  # "run", "skip" or "slow"
    reason: str = ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order, with their readme-test markers."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        ticks, language = fence.group(1), fence.group(2)
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{i + 1}: code fence never closed")
        block = Block(line=start + 1, language=language, code="\n".join(lines[start:end]) + "\n")
        marker = _MARKER.match(lines[i - 1].strip()) if i > 0 else None
        if marker:
            block.mode, block.reason = marker.group(1), (marker.group(2) or "").strip()
        blocks.append(block)
        i = end + 1
    return blocks


def test_readme_blocks_follow_the_convention():
    blocks = readme_blocks(README.read_text())
    assert sum(b.language in RUNNABLE and b.mode == "run" for b in blocks) >= 8, "the README lost its examples"
    for b in blocks:
        where = f"README.md:{b.line}"
        assert b.language in LANGUAGES, f"{where}: fence language must be one of {LANGUAGES}, got {b.language!r}"
        assert b.mode in ("run", "skip", "slow"), f"{where}: unknown readme-test mode {b.mode!r}"
        if b.mode != "run":
            assert b.reason, f"{where}: a readme-test {b.mode} marker needs a reason in parentheses"
            assert b.language in RUNNABLE, f"{where}: only python/bash blocks take a readme-test marker"
    # A marker that is not directly above a fence would silently mark nothing.
    lines = README.read_text().splitlines()
    for n, line in enumerate(lines):
        if _MARKER.match(line.strip()):
            assert n + 1 < len(lines) and _FENCE.match(lines[n + 1]), (
                f"README.md:{n + 1}: a readme-test marker must be directly above a code fence"
            )


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it at most {MAX_README_LINES} (depth goes to docs/)"


# ------------------------------------------------------------------ links
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _markdown_links(path: Path):
    in_code = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for match in _LINK.finditer(line):
            yield n, match.group(1) or match.group(2)


def _pages():
    return [README] + sorted(DOCS.glob("*.md"))


def test_relative_links_point_to_existing_files():
    assert DOCS.is_dir() and list(DOCS.glob("*.md")), "docs/ holds the depth the README links to"
    broken, checked = [], 0
    for page in _pages():
        for n, target in _markdown_links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            checked += 1
            where = f"{page.relative_to(REPO)}:{n}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where} (no heading with anchor #{anchor})")
    assert checked >= 10, f"only {checked} relative links found: the link pattern is broken"
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_links_to_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, t in _markdown_links(README)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link to: {missing}"


def test_docs_signatures_names_every_exported_signature():
    """docs/signatures.md documents every signature the tasks write (mmzoo/tasks/*.py)."""
    page = (DOCS / "signatures.md").read_text()
    source = "\n".join(path.read_text() for path in sorted((REPO / "mmzoo" / "tasks").glob("*.py")))
    # Endpoints are named as dict keys: `"name": (fn, spec)`, or `functions["name"] = (input, fn)`.
    exported = set(re.findall(r'functions\["(\w+)"\]', source)) | set(re.findall(r'^\s+"(\w+)": \(', source, re.M))
    assert {"serving_default", "preprocessed", "beam_search", "embed_image", "embed_text"} <= exported
    for name in sorted(exported):
        assert f"`{name}`" in page, f"docs/signatures.md does not document the {name} signature"


def test_code_points_to_docs_not_to_files_outside_the_repository():
    """Docstrings name the signature contract's page, not DESIGN.md (not in the repository)."""
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "mmzoo").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "DESIGN.md" in line
    ]
    assert not offenders, f"references to DESIGN.md (use docs/signatures.md): {offenders}"
    assert "docs/signatures.md" in (REPO / "mmzoo" / "export" / "signatures.py").read_text()


# ------------------------------------------------------------------ running
PYTHON_WARNING = re.compile(r"^.*\w+Warning: .*$", re.M)


def python_warnings(text: str) -> list[str]:
    """The lines of ``text`` (a command's or a notebook's output) where Python printed a warning."""
    return PYTHON_WARNING.findall(text)


_DRIVER = r'''
import json, os, subprocess, sys, time, traceback

readme, blocks = sys.argv[1], json.load(open(sys.argv[2]))
for b in blocks:
    print(f"=== README.md:{b['line']} ({b['language']}) starts", flush=True)
    start = time.time()
    if b["language"] == "python":
        # Padding keeps README.md's line numbers in tracebacks.
        source = "\n" * (b["line"] - 1) + b["code"]
        try:
            exec(compile(source, readme, "exec"), {"__name__": "__main__"})
            ok = True
        except BaseException:
            traceback.print_exc()
            ok = False
        sys.stdout.flush(); sys.stderr.flush()
    else:
        ok = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]]).returncode == 0
    if not ok:
        print(f"README_BLOCK_FAILED {b['line']}", flush=True)
        sys.exit(1)
    print(f"=== README.md:{b['line']} ok ({time.time() - start:.1f}s)", flush=True)
print("README_ALL_BLOCKS_OK", flush=True)
'''


def _run_readme(tmp_path, modes, timeout):
    blocks = [b for b in readme_blocks(README.read_text()) if b.language in RUNNABLE and b.mode in modes]
    work = tmp_path / "fresh"
    work.mkdir()
    (tmp_path / "blocks.json").write_text(json.dumps([dataclasses.asdict(b) for b in blocks]))
    (tmp_path / "driver.py").write_text(_DRIVER)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    env.pop("PYTHONPATH", None)  # mmzoo comes from the installed package, as for a user
    start = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "driver.py"), str(README), str(tmp_path / "blocks.json")],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        started = re.findall(r"=== README.md:(\d+) \(\w+\) starts", out)
        pytest.fail(f"README blocks ran past {timeout}s (last block started: README.md:{started[-1] if started else '?'})\n"
                    + out[-4000:])
    out = proc.stdout
    failed = re.search(r"README_BLOCK_FAILED (\d+)", out)
    if failed or proc.returncode != 0 or "README_ALL_BLOCKS_OK" not in out:
        line = failed.group(1) if failed else "?"
        pytest.fail(f"README.md block at line {line} failed when run in order in a fresh directory:\n{out[-6000:]}")
    timings = re.findall(r"=== README.md:(\d+) ok \(([\d.]+)s\)", out)
    assert len(timings) == len(blocks)
    # What a person pasting the README sees holds no Python warning (Keras' or mmzoo's).
    assert not python_warnings(out), out[-6000:]
    print(f"{len(blocks)} README blocks ran in {time.time() - start:.0f}s: "
          + ", ".join(f"{line}: {t}s" for line, t in timings))
    return work, out


def test_readme_runs_as_pasted(tmp_path):
    work, out = _run_readme(tmp_path, modes=("run",), timeout=840)
    # What the blocks promise a person can check: versions 1 of each export, the serving config.
    for name in ("gated_classifier", "dual_encoder", "transformer_captioner"):
        assert (work / "saved_models" / name / "1" / "saved_model.pb").is_file(), name
    assert (work / "saved_models" / "models.config").is_file()
    # `mmzoo predict --data`: the export's answer for each of the 100 test rows, named by its manifest line.
    rows = [json.loads(line) for line in (work / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"].rsplit(" ", 1)[-1] for r in rows] == [str(n) for n in range(1, 101)]
    assert all(r["class_ids"] == max(range(len(r["scores"])), key=r["scores"].__getitem__) for r in rows)


QUICK_DEMO = "mmzoo demo --quick --out demo"


@pytest.mark.slow
def test_readme_runs_as_pasted_with_slow_blocks(tmp_path):
    """The slow blocks (the quick demo), in a fresh directory, with the quick demo's own end-to-end checks
    (tests/test_demo.py) on what its block printed: the slow tier trains the quick demo once, here.

    The other blocks run in order in the default tier (test_readme_runs_as_pasted), not again here. Pasting
    the README runs them after the demo in the same directory; that is the same run because the demo writes
    nothing but its ``--out`` folder and no other block names that folder (both asserted below).
    """
    from tests.test_demo import assert_quick_demo_ran

    blocks = readme_blocks(README.read_text())
    assert any(b.mode == "slow" for b in blocks), "no slow block left: drop this test"
    demo = [b for b in blocks if b.mode == "slow" and b.language == "bash" and b.code.strip() == QUICK_DEMO]
    assert len(demo) == 1, (f"README.md should run `{QUICK_DEMO}` once, as a slow block: it is the only end-to-end "
                            "run of the quick demo (tests/test_demo.py checks its output through this test)")
    assert [b for b in blocks if b.mode == "slow" and b.language in RUNNABLE] == demo, (
        "a new slow block: run the blocks in order here (modes=('run', 'slow')) unless it too writes only a "
        "folder no other block reads")
    readers = [b.line for b in blocks if b.mode == "run" and re.search(r"(^|[\s'\"/])demo/", b.code)]
    assert not readers, f"README.md blocks at lines {readers} read the demo's folder: run every block in order here"
    work, out = _run_readme(tmp_path, modes=("slow",), timeout=1200)
    assert sorted(p.name for p in work.iterdir()) == ["demo"], "the quick demo wrote outside its --out folder"
    line = demo[0].line
    printed = out[out.index(f"=== README.md:{line} (bash) starts"):out.index(f"=== README.md:{line} ok")]
    assert_quick_demo_ran(printed, work / "demo")
