"""Train the same tiny run on one device and with MirroredStrategy over 2 logical CPUs.

Usage: python tests/scripts/mirrored_vs_default.py MANIFEST OUT_DIR [MODEL] [LEARNING_RATE]
Prints one JSON line: {"default": result, "mirrored": result, "default_loss": [...], "mirrored_loss": [...]}.
Logical devices must exist before TensorFlow initialises, hence a process of its own.
"""

import csv
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def main(manifest, out_dir, model="gated_classifier", learning_rate="1e-2"):
    from mmzoo.distribute import configure_cpu_devices

    configure_cpu_devices(2)
    import keras

    from mmzoo.training import train

    report = {}
    for strategy in ("default", "mirrored"):
        out = os.path.join(out_dir, strategy)
        report[strategy] = train(
            model, manifest, epochs=3, batch_size=8, preset="tiny", out_dir=out, seed=0, deterministic=True,
            learning_rate=float(learning_rate),
            overrides={"image_size": [32, 32], "dropout": 0.0}, strategy=strategy, verbose=0,
        )
        with open(os.path.join(out, "history.csv"), newline="") as f:
            report[f"{strategy}_loss"] = [float(row["loss"]) for row in csv.DictReader(f)]
        keras.backend.clear_session()
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
