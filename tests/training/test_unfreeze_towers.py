"""UnfreezeTowers (mmzoo/training/callbacks.py) on a tiny random keras-hub BERT, and mixed precision with it."""

import os
import warnings

import keras
import numpy as np
import pytest

from mmzoo.towers.keras_hub_tuning import keras_hub_backbones, transformer_blocks
from mmzoo.training.callbacks import UnfreezeTowers
from tests.harness import assert_reloads_training_state
from tests.towers.test_keras_hub_tuning import build_model, save_bert_preset


@pytest.fixture(scope="module")
def bert2(tmp_path_factory):
    return save_bert_preset(tmp_path_factory.mktemp("bert2"))


class _Snapshots(keras.callbacks.Callback):
    def __init__(self, layers):
        super().__init__()
        self.layers, self.at_end = layers, []

    def on_epoch_end(self, epoch, logs=None):
        self.at_end.append({name: [np.array(w) for w in layer.weights] for name, layer in self.layers.items()})


def _changed(a, b):
    return any(not np.allclose(x, y) for x, y in zip(a, b))


def test_unfreeze_trains_top_layers_after_k_epochs(bert2):
    model, inputs = build_model(bert2)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    backbone = keras_hub_backbones(model)[0]
    bottom, top = transformer_blocks(backbone)
    layers = {"bottom": bottom, "top": top, "pooler": backbone.get_layer("pooled_dense"),
              "embedding": backbone.get_layer("token_embedding")}
    start = {name: [np.array(w) for w in layer.weights] for name, layer in layers.items()}
    snapshots = _Snapshots(layers)
    unfreeze = UnfreezeTowers(after_epochs=2, top_layers=1, learning_rate_factor=0.1)
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=4, batch_size=2, verbose=0, callbacks=[unfreeze, snapshots])
    assert unfreeze.unfrozen_at == 2
    epoch1, epoch2, epoch4 = snapshots.at_end[1], snapshots.at_end[2], snapshots.at_end[3]
    for name in layers:  # frozen for the first two epochs
        assert not _changed(start[name], epoch1[name]), name
    for name in ("top", "pooler"):
        assert _changed(epoch1[name], epoch2[name]) and _changed(epoch2[name], epoch4[name]), name
    for name in ("bottom", "embedding"):
        assert not _changed(start[name], epoch4[name]), name
    assert np.isclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 0.001)
    assert int(model.optimizer.iterations) == 8  # the step count carried over: 2 steps x 4 epochs


@pytest.mark.parametrize("top_layers", [1, None])
def test_a_model_saved_after_unfreezing_reloads_unfrozen_and_trains_on(bert2, top_layers, tmp_path):
    # Rebuilt from its config alone, it would come back frozen: Keras would skip the saved Adam state
    # (built over the unfrozen layers) with a warning, and the next fit would train other weights.
    model, inputs = build_model(bert2)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    labels = np.array([0, 1, 0, 1])
    model.fit(inputs, labels, epochs=2, batch_size=2, verbose=0, callbacks=[UnfreezeTowers(1, top_layers=top_layers)])
    assert model.get_config()["unfrozen_towers"] == ["all" if top_layers is None else 1]
    reloaded = assert_reloads_training_state(model, inputs, tmp_path)
    backbone = keras_hub_backbones(reloaded)[0]
    bottom, top = transformer_blocks(backbone)
    assert top.trainable_weights and bool(bottom.trainable_weights) == (top_layers is None)
    assert backbone.get_layer("pooled_dense").trainable_weights  # the classifier reads the pooler: it trains
    before = {v.path: np.array(v) for v in reloaded.weights}
    reloaded.fit(inputs, labels, epochs=1, batch_size=2, verbose=0)  # goes on: Adam at step 5
    assert int(reloaded.optimizer.iterations) == 6
    changed = {v.path for v in reloaded.weights if not np.array_equal(np.array(v), before[v.path])}
    assert any(path.startswith(top.path) for path in changed)
    assert any(path.startswith(bottom.path) for path in changed) == (top_layers is None)


def test_unfreeze_all_layers_and_refusals(bert2):
    model, inputs = build_model(bert2)
    model.compile()
    callback = UnfreezeTowers(after_epochs=0)
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0, callbacks=[callback])
    backbone = keras_hub_backbones(model)[0]
    assert len(backbone.trainable_weights) == len(backbone.weights)
    with pytest.raises(ValueError, match="top_layers must be positive"):
        UnfreezeTowers(1, top_layers=0)
    with pytest.raises(ValueError, match="learning_rate_factor must be in"):
        UnfreezeTowers(1, learning_rate_factor=0)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="found no keras_hub tower"):
        plain.fit(np.zeros((2, 2)), np.zeros((2, 1)), verbose=0, callbacks=[UnfreezeTowers(0)])


def test_mixed_float16_fit_step_with_keras_hub_tower(bert2):
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, inputs = build_model(bert2)
        model.compile()
        assert keras_hub_backbones(model)[0].compute_dtype == "float16"
        history = model.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0,
                            callbacks=[UnfreezeTowers(after_epochs=0, top_layers=1)])
        assert np.isfinite(history.history["loss"][0])
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.config.set_dtype_policy(previous)


def test_recompiling_keeps_xla_forced_by_the_run(bert2):
    from mmzoo.training import keras_compat
    from mmzoo.training.callbacks import recompile_with_scaled_lr

    model, _ = build_model(bert2)
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    assert not model.jit_compile  # Keras refuses: the tokenizer's string ops do not support XLA
    assert keras_compat.force_jit(model) and model.jit_compile
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recompile_with_scaled_lr(model, 0.1)
    assert model.jit_compile  # still XLA after the unfreeze's recompile
    assert not [str(w.message) for w in caught if "jit_compile" in str(w.message)]  # nor Keras' refusal again
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)


# ------------------------------------------------------------------ `mmzoo train` end to end, resumed across K
def _run_kwargs(preset, out):
    from tests.training.runs import TINY

    return dict(out_dir=str(out), epochs=3, seed=1, deterministic=True, text_preset=preset, unfreeze_after=1,
                unfreeze_layers=1, unfreeze_lr_factor=0.5, **TINY)


@pytest.fixture(scope="module")
def cli_run(bert2, tmp_path_factory):
    """``mmzoo train --text-preset DIR --unfreeze-after 1`` on 16 shapes images, uninterrupted."""
    import json

    from mmzoo.cli import main
    from tests.training.runs import shapes_manifest

    root = tmp_path_factory.mktemp("cli_run")
    manifest = shapes_manifest(root / "shapes")
    out = root / "run"
    argv = ["train", "concat_classifier", "--data", manifest, "--out", str(out), "--epochs", "3", "--seed", "1",
            "--deterministic", "--preset", "tiny", "--set", "image_size=[32,32]", "--batch-size", "8", "--quiet",
            "--text-preset", bert2, "--unfreeze-after", "1", "--unfreeze-layers", "1", "--unfreeze-lr-factor", "0.5"]
    assert main(argv) == 0
    keras.backend.clear_session(free_memory=False)
    with open(out / "run_config.json") as f:
        saved = json.load(f)
    return manifest, out, saved


def test_cli_run_fine_tunes_the_top_layer_from_epoch_k(cli_run, bert2):
    import keras_hub

    _, out, saved = cli_run
    assert (saved["text_preset"], saved["unfreeze_after"], saved["unfreeze_layers"]) == (bert2, 1, 1)
    assert saved["unfreeze_lr_factor"] == 0.5 and saved["train_towers"] is False
    model = keras.saving.load_model(str(out / "model.keras"), safe_mode=True)
    trained = keras_hub_backbones(model)[0]
    start = keras_hub.models.Backbone.from_preset(bert2)
    (bottom, top), (bottom0, top0) = transformer_blocks(trained), transformer_blocks(start)
    assert not _changed([np.array(w) for w in bottom0.weights], [np.array(w) for w in bottom.weights])
    assert _changed([np.array(w) for w in top0.weights], [np.array(w) for w in top.weights])


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [0, 1], ids=["before-k", "after-k"])
def test_run_killed_before_or_after_k_resumes_to_the_same_weights(cli_run, bert2, tmp_path, stop_after):
    """Killed at the end of epoch 1 (frozen; resumes and unfreezes at K=1) or of epoch 2 (unfrozen;
    the resumed run unfreezes at train begin so the backup's optimizer slots load): same weights."""
    from mmzoo.training import backup_epoch, train
    from tests.training.runs import Interrupt, assert_same_weights, history

    manifest, reference, _ = cli_run
    kwargs = _run_kwargs(bert2, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train("concat_classifier", manifest, callbacks=[Interrupt(at=stop_after)], **kwargs)
    assert backup_epoch(str(tmp_path / "backup")) == stop_after + 1
    keras.backend.clear_session(free_memory=False)
    resumed = train("concat_classifier", manifest, **kwargs)
    assert resumed["initial_epoch"] == stop_after + 1 and resumed["epochs_run"] == 2 - stop_after
    assert history(str(tmp_path)) == history(str(reference))
    assert_same_weights(str(reference / "model.keras"), str(tmp_path / "model.keras"))


@pytest.mark.slow
def test_a_lora_run_killed_after_an_epoch_resumes_to_the_same_weights(bert2, tmp_path):
    # save_weights (the backup) merges the adapters into the kernels and load_weights zeroes them: the
    # resumed run would train nothing of the tower. The backup keeps them beside its weights file.
    from mmzoo.training import train
    from tests.training.runs import TINY, Interrupt, assert_same_weights, history, shapes_manifest

    manifest = shapes_manifest(tmp_path / "shapes")
    kwargs = dict(epochs=2, seed=1, deterministic=True, text_preset=bert2, lora_rank=2, **TINY)
    train("concat_classifier", manifest, out_dir=str(tmp_path / "reference"), **kwargs)
    keras.backend.clear_session(free_memory=False)
    with pytest.raises(KeyboardInterrupt):
        train("concat_classifier", manifest, out_dir=str(tmp_path / "run"), callbacks=[Interrupt(at=0)], **kwargs)
    assert sorted(os.listdir(tmp_path / "run" / "backup")) == [
        "epoch_1.lora.npz", "epoch_1.weights.h5", "training_metadata.json"]
    keras.backend.clear_session(free_memory=False)
    resumed = train("concat_classifier", manifest, out_dir=str(tmp_path / "run"), **kwargs)
    assert resumed["initial_epoch"] == 1
    assert history(str(tmp_path / "run")) == history(str(tmp_path / "reference"))
    assert_same_weights(str(tmp_path / "reference" / "model.keras"), str(tmp_path / "run" / "model.keras"))


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_lora_backup_names_the_file(bert2, tmp_path, damage):
    from mmzoo.training import ResumeError
    from mmzoo.training.callbacks import BackupAndRestore
    from tests.training.runs import Interrupt

    backup = str(tmp_path / "backup")
    model, inputs = build_model(bert2, lora_rank=2)
    model.compile()
    with pytest.raises(KeyboardInterrupt):
        model.fit(inputs, np.array([0, 1, 0, 1]), epochs=2, batch_size=4, verbose=0,
                  callbacks=[BackupAndRestore(backup), Interrupt(at=0)])
    lora = os.path.join(backup, "epoch_1.lora.npz")
    if damage == "truncated":
        with open(lora, "r+b") as f:
            f.truncate(os.path.getsize(lora) // 2)
    else:
        os.remove(lora)
    fresh, _ = build_model(bert2, lora_rank=2)
    fresh.compile()
    with pytest.raises(ResumeError, match=f"Cannot resume the unfinished run from {lora}: it does not load"):
        fresh.fit(inputs, np.array([0, 1, 0, 1]), epochs=2, batch_size=4, verbose=0, callbacks=[BackupAndRestore(backup)])
