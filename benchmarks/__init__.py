"""mmzoo's benchmark scripts: one module per figure, plus ``run`` that runs them all.

Not part of the installed ``mmzoo`` wheel (setup.cfg packages only ``mmzoo*``);
it is a package of the repository so that the scripts can import each other
(``from benchmarks import _digits_questions``) and the tests can import them
(``from benchmarks import run``). Run a script from the repository root as a
module::

    python -m benchmarks.run --quick          # every script, rewrites benchmarks/README.md
    python -m benchmarks.serving --quick      # one script

Each script's last stdout line is its JSON report (see ``benchmarks.run``).
``benchmarks.experiments`` holds research analyses that ``run`` does not run.
"""
