"""README.md and the docs/ pages run as pasted, the README stays short, and their links resolve.

The convention (README.md, "How to read this README"; the same for every docs/ page):

* Every fenced block declares its language: ``python`` and ``bash`` blocks
  run, ``text`` blocks show output or layouts and never run.
* README.md's runnable blocks run in README order in one fresh, empty
  directory. Each docs/ page's run in page order in a copy of the directory
  the README's left (the pages say "the examples use the data the README
  generates"), so a page can be read after the README and not after another
  page. Each ``python`` block runs in a fresh namespace (it has its own
  imports and names, so it can be pasted into a new ``python``); later blocks
  read the files earlier blocks wrote. ``bash`` blocks run with ``bash -e -o
  pipefail`` and the venv's ``bin/`` first on ``PATH``.
* A block directly below ``<!-- doc-test: skip (REASON) -->`` never runs
  (installs, Docker, a running server, a pretrained preset of yours); one
  below ``<!-- doc-test: slow (REASON) -->`` runs only in the slow tier.
  In a docs page, the block below ``<!-- doc-test: serve (REASON) -->`` (the
  command that starts TF Serving on ``saved_models/``) is not run: the test
  starts its stand-in for TF Serving (tests/serving/doubles.py) on the
  documented ports, 8501 (REST) and 8500 (gRPC), serving every model under
  ``saved_models/`` at its latest version, so the page's ``curl`` and client
  blocks after it run against a real SavedModel. Each marker needs a reason.

The default tier runs README.md's blocks and then every docs page's in one
Python process (TensorFlow is imported once for the Python blocks), and
reports each page as its own test, naming the line of the block that failed;
a failing README block stops the run (the pages start from its directory).
The README's blocks took 196 s on a shared 2-core machine under a load
average of about 6 (90 s of CPU time, most of it starting TensorFlow in the
`mmzoo` commands and tracing). The slow-tier test runs the slow block,
`mmzoo demo --quick` (3m23s there), the only run of the quick demo in the
test suite: tests/test_demo.py's checks of the demo's output are made on what
that block printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 270  # "about 250", plus the Layout section's one line per package (issue 28)
RUNNABLE = ("python", "bash")
LANGUAGES = RUNNABLE + ("text",)

_FENCE = re.compile(r"^(```+)\s*([^\s`]*)\s*$")
_MARKER = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(?:\((.*)\))?\s*-->\s*$")


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the block's first code line in README.md
    language: str
    code: str
    mode: str = "run"  # "run", "skip" or "slow"
    reason: str = ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order, with their doc-test markers."""
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


def _all_pages():
    return [README] + sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", _all_pages(), ids=lambda p: p.name)
def test_blocks_follow_the_convention(page):
    text = page.read_text()
    blocks = readme_blocks(text)
    if page == README:
        assert sum(b.language in RUNNABLE and b.mode == "run" for b in blocks) >= 8, "the README lost its examples"
    for b in blocks:
        where = f"{page.relative_to(REPO)}:{b.line}"
        assert b.language in LANGUAGES, f"{where}: fence language must be one of {LANGUAGES}, got {b.language!r}"
        assert b.mode in ("run", "skip", "slow", "serve"), f"{where}: unknown doc-test mode {b.mode!r}"
        if b.mode == "serve":
            assert page != README and b.language == "bash" and "saved_models" in b.code, (
                f"{where}: a serve block is a docs page's command that starts TF Serving on saved_models/")
        if b.mode != "run":
            assert b.reason, f"{where}: a doc-test {b.mode} marker needs a reason in parentheses"
            assert b.language in RUNNABLE, f"{where}: only python/bash blocks take a doc-test marker"
    # A marker that is not directly above a fence would silently mark nothing.
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if _MARKER.match(line.strip()):
            assert n + 1 < len(lines) and _FENCE.match(lines[n + 1]), (
                f"{page.relative_to(REPO)}:{n + 1}: a doc-test marker must be directly above a code fence"
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


def test_relative_links_point_to_existing_files():
    assert DOCS.is_dir() and list(DOCS.glob("*.md")), "docs/ holds the depth the README links to"
    broken, checked = [], 0
    for page in _all_pages():
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


_DRIVER = r"""
import importlib.util, json, os, shutil, subprocess, sys, time, traceback


def serve(repo):
    # In place of TF Serving (which cannot be installed here): the test suite's stand-in, on the
    # documented ports, serving every model under saved_models/ at its latest version.
    spec = importlib.util.spec_from_file_location("serving_doubles", os.path.join(repo, "tests", "serving", "doubles.py"))
    doubles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doubles)
    base = doubles.ServedBasePath("saved_models")
    try:
        doubles.RestDouble(base, lifetime=1200, port=8501).start()
        doubles.GrpcDouble(base, lifetime=1200, port=8500).start()
    except (OSError, RuntimeError) as error:
        print(f"the TF Serving stand-in cannot listen on 8501 (REST) and 8500 (gRPC): {error}", flush=True)
        return False
    print("TF Serving stand-in: REST on localhost:8501, gRPC on localhost:8500, serving saved_models/", flush=True)
    return True


for page in json.load(open(sys.argv[1])):
    name = page["name"]
    if page["copy_from"]:
        shutil.copytree(page["copy_from"], page["dir"], symlinks=True)
    else:
        os.makedirs(page["dir"])
    os.chdir(page["dir"])
    for b in page["blocks"]:
        print(f"=== {name}:{b['line']} ({b['language']}) starts", flush=True)
        start = time.time()
        if b["mode"] == "serve":
            ok = serve(sys.argv[2])
        elif b["language"] == "python":
            # Padding keeps the page's line numbers in tracebacks.
            source = "\n" * (b["line"] - 1) + b["code"]
            try:
                exec(compile(source, page["path"], "exec"), {"__name__": "__main__"})
                ok = True
            except BaseException:
                traceback.print_exc()
                ok = False
            sys.stdout.flush(); sys.stderr.flush()
        else:
            ok = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]]).returncode == 0
        if not ok:
            print(f"BLOCK_FAILED {name}:{b['line']}", flush=True)
            if page["copy_from"] is None:
                sys.exit(1)  # the pages after it start from this one's directory
            break
        print(f"=== {name}:{b['line']} ok ({time.time() - start:.1f}s)", flush=True)
    else:
        print(f"PAGE_OK {name}", flush=True)
print("ALL_PAGES_RAN", flush=True)
"""


@dataclasses.dataclass
class PageRun:
    """What the driver printed for one page, and the directory its blocks ran in."""

    name: str
    dir: Path
    blocks: list
    output: str = ""

    @property
    def ok(self) -> bool:
        return f"PAGE_OK {self.name}" in self.output

    @property
    def failed_line(self) -> str:
        failed = re.search(rf"BLOCK_FAILED {re.escape(self.name)}:(\d+)", self.output)
        return failed.group(1) if failed else ""

    def check(self):
        if not self.output:
            pytest.fail(f"{self.name}: its blocks did not run (a page before it failed)")
        if not self.ok:
            where = self.failed_line or "?"
            pytest.fail(f"{self.name}:{where}: the block failed when run as pasted, in order "
                        f"({self.dir.name}/):\n{self.output[-6000:]}")
        timings = re.findall(rf"=== {re.escape(self.name)}:(\d+) ok \(([\d.]+)s\)", self.output)
        assert len(timings) == len(self.blocks), self.output[-3000:]
        # What a person pasting the page sees holds no Python warning (Keras' or mmzoo's).
        assert not python_warnings(self.output), self.output[-6000:]
        print(f"{self.name}: {len(self.blocks)} blocks: " + ", ".join(f"{line}: {t}s" for line, t in timings))


def _runnable(path: Path, modes) -> list[Block]:
    return [b for b in readme_blocks(path.read_text()) if b.language in RUNNABLE and b.mode in modes]


def run_pages(tmp_path, pages, timeout) -> dict[str, PageRun]:
    """Run each page's blocks in one Python process (TensorFlow is imported once for the Python blocks).

    ``pages``: ``(path, modes)`` pairs; the first runs in a fresh, empty directory, each later one in a
    copy of the directory the first left (so a docs page starts from what the README wrote). A failing
    block ends its page; one of the first page ends the run."""
    runs, plan = {}, []
    for n, (path, modes) in enumerate(pages):
        name = str(path.relative_to(REPO))
        run = PageRun(name, tmp_path / ("fresh" if n == 0 else f"after_readme_{path.stem}"), _runnable(path, modes))
        runs[name] = run
        plan.append({"name": name, "path": str(path), "dir": str(run.dir),
                     "copy_from": None if n == 0 else str(tmp_path / "fresh"),
                     "blocks": [dataclasses.asdict(b) for b in run.blocks]})
    (tmp_path / "pages.json").write_text(json.dumps(plan))
    (tmp_path / "driver.py").write_text(_DRIVER)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    env.pop("PYTHONPATH", None)  # mmzoo comes from the installed package, as for a user
    try:
        proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "pages.json"), str(REPO)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        out = proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        started = re.findall(r"=== (\S+:\d+) \(\w+\) starts", out)
        pytest.fail(f"the blocks ran past {timeout}s (last block started: {started[-1] if started else '?'})\n"
                    + out[-4000:])
    # Split the output at each page's first block.
    starts = [(out.find(f"=== {name}:"), name) for name in runs]
    starts = sorted((i, name) for i, name in starts if i >= 0)
    for k, (i, name) in enumerate(starts):
        run = runs[name]
        run.output = out[i:starts[k + 1][0] if k + 1 < len(starts) else len(out)]
    if not starts:
        pytest.fail(f"the driver ran no block (exit {proc.returncode}):\n{out[-4000:]}")
    return runs


DOCS_MODES = ("run", "serve")


def docs_pages() -> list[Path]:
    """The docs/ pages with blocks that run."""
    return [p for p in sorted(DOCS.glob("*.md")) if _runnable(p, DOCS_MODES)]


@pytest.fixture(scope="module")
def pasted(tmp_path_factory):
    """README.md's blocks in a fresh directory, then each docs/ page's in a copy of what they left."""
    tmp = tmp_path_factory.mktemp("pasted")
    return run_pages(tmp, [(README, ("run",))] + [(p, DOCS_MODES) for p in docs_pages()], timeout=1500)


@pytest.mark.timeout(1800)
def test_readme_runs_as_pasted(pasted):
    readme = pasted["README.md"]
    readme.check()
    work = readme.dir
    # What the blocks promise a person can check: versions 1 of each export, the serving config.
    for name in ("gated_classifier", "dual_encoder", "transformer_captioner"):
        assert (work / "saved_models" / name / "1" / "saved_model.pb").is_file(), name
    assert (work / "saved_models" / "models.config").is_file()
    # `mmzoo predict --data`: the export's answer for each of the 100 test rows, named by its manifest line.
    rows = [json.loads(line) for line in (work / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"].rsplit(" ", 1)[-1] for r in rows] == [str(n) for n in range(1, 101)]
    assert all(r["class_ids"] == max(range(len(r["scores"])), key=r["scores"].__getitem__) for r in rows)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", [p.stem for p in docs_pages()])
def test_docs_page_runs_as_pasted_after_the_readme(pasted, page):
    if not pasted["README.md"].ok:
        pytest.fail("README.md's blocks failed first (test_readme_runs_as_pasted says where): the pages start from them")
    pasted[f"docs/{page}.md"].check()


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
    readme = run_pages(tmp_path, [(README, ("slow",))], timeout=1200)["README.md"]
    readme.check()
    work, out = readme.dir, readme.output
    assert sorted(p.name for p in work.iterdir()) == ["demo"], "the quick demo wrote outside its --out folder"
    line = demo[0].line
    printed = out[out.index(f"=== README.md:{line} (bash) starts"):out.index(f"=== README.md:{line} ok")]
    assert_quick_demo_ran(printed, work / "demo")
