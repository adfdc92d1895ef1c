"""How long writing a SavedModel takes: ``mmzoo``'s ``write_archive`` against Keras' ``ExportArchive.write_out``.

Keras' ``write_out`` traces every endpoint twice (once outside a save
context to list the variables it uses, once inside ``tf.saved_model.save``,
whose save context is part of ``tf.function``'s cache key) and saves only
the second trace; ``mmzoo.export.signatures.write_archive`` makes the first
trace inside a save context with the same options, so the save reuses it.
For each zoo entry (tiny preset), one model is built and, per round, a fresh
``ExportArchive`` (``build_export_archive``) is written both ways, in an
order alternating per round; the figure is the median over rounds of the
ratio of the two writes in that round (paired, so a burst of load from
another job hits both). The rows also give each way's trace count per
endpoint and one whole ``mmzoo.export_saved_model`` (write, graph check,
warmup requests, reload and verification) per entry.

    python -m benchmarks.export_time --quick
    python -m benchmarks.export_time --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import mmzoo  # noqa: E402
from benchmarks.run import contract_report  # noqa: E402
from mmzoo.export.saved_model import _build_on_samples  # noqa: E402
from mmzoo.export.signatures import build_export_archive, write_archive  # noqa: E402

ENTRIES = ("gated_classifier", "dual_encoder", "transformer_captioner")
LABELS = ["yes", "no"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one entry, two rounds")
    p.add_argument("--entries", nargs="+", default=None, help=f"zoo entries (default: {' '.join(ENTRIES)})")
    p.add_argument("--rounds", type=int, default=None, help="paired writes per entry (default 5; 2 with --quick)")
    args = p.parse_args(argv)
    args.entries = args.entries or (list(ENTRIES[:1]) if args.quick else list(ENTRIES))
    args.rounds = args.rounds or (2 if args.quick else 5)
    return args


def _build(name):
    kwargs = {"label_names": LABELS} if mmzoo.get_entry(name).task == "classification" else {}
    model = mmzoo.build(name, preset="tiny", **kwargs)
    _build_on_samples(model, None, None)
    return model


def _write(model, path, way):
    """Seconds to write ``model``'s archive to ``path`` one ``way``, and each endpoint's trace count."""
    archive = build_export_archive(model)
    start = time.perf_counter()
    if way == "keras":
        archive.write_out(path, verbose=False)
    else:
        write_archive(archive, path)
    seconds = time.perf_counter() - start
    return seconds, {n: getattr(archive._tf_trackable, n).experimental_get_tracing_count() for n in archive._endpoint_names}


def measure(name, rounds, work):
    model = _build(name)
    times, traces = {"keras": [], "mmzoo": []}, {}
    for r in range(rounds):
        for way in (("keras", "mmzoo") if r % 2 == 0 else ("mmzoo", "keras")):
            seconds, traces[way] = _write(model, os.path.join(work, f"{name}-{way}-{r}"), way)
            times[way].append(seconds)
    start = time.perf_counter()
    mmzoo.export_saved_model(model, os.path.join(work, f"{name}-export"))
    export_seconds = time.perf_counter() - start
    keras.backend.clear_session()
    ratios = [m / k for m, k in zip(times["mmzoo"], times["keras"])]
    return {"ratio": statistics.median(ratios), "keras_s": statistics.median(times["keras"]),
            "mmzoo_s": statistics.median(times["mmzoo"]), "traces": traces, "export_s": export_seconds}


def main(argv=None):
    args = parse_args(argv)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.entries:
            res = results[name] = measure(name, args.rounds, work)
            print(f"{name}: write {res['mmzoo_s']:.2f} s vs Keras write_out {res['keras_s']:.2f} s "
                  f"(median ratio {res['ratio']:.2f}); traces {res['traces']}; "
                  f"export_saved_model {res['export_s']:.1f} s", file=sys.stderr, flush=True)
            rows.append({"figure": f"`{name}` (tiny): SavedModel write time, write_archive / Keras write_out, "
                                   f"median of {args.rounds} paired rounds",
                         "goal": None, "value": f"{res['ratio']:.2f}x ({res['mmzoo_s']:.2f} vs {res['keras_s']:.2f} s)",
                         "met": None})
            rows.append({"figure": f"`{name}`: traces per endpoint, write_archive / Keras write_out", "goal": None,
                         "value": f"{max(res['traces']['mmzoo'].values())} / {max(res['traces']['keras'].values())}",
                         "met": None})
            rows.append({"figure": f"`{name}`: one whole `export_saved_model` (write, graph check, warmup, "
                                   "reload, verification)", "goal": None, "value": f"{res['export_s']:.1f} s",
                         "met": None})
    report = contract_report("export_time", rows, argv)
    print(json.dumps(report), flush=True)
    return report, results


if __name__ == "__main__":
    main()
