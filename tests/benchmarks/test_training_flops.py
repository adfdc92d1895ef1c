"""benchmarks/training.py: model FLOPs (TensorFlow's profiler), the mixed-precision build, the peak table."""


import keras
import numpy as np
import pytest

from benchmarks import training


def _mlp():
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )


def test_count_training_flops_of_a_dense_network_by_hand():
    # One example through Dense(8 -> 4, relu) -> Dense(4 -> 2). TensorFlow's
    # registry counts a MatMul [1, k] x [k, n] as 2*k*n (a multiply and an
    # add per multiply-add), a BiasAdd as one add per output element, and
    # nothing for the ReLU.
    first = 2 * 8 * 4 + 4
    second = 2 * 4 * 2 + 2
    flops = training.count_training_flops(_mlp(), np.zeros((5, 8), "float32"))
    assert flops["forward"] == first + second == 86
    assert flops["train"] == 3 * flops["forward"]
    assert flops["uncounted"] == []


def test_count_training_flops_takes_x_of_an_x_y_tuple_and_ignores_the_batch_size():
    model = _mlp()
    alone = training.count_training_flops(model, np.zeros((1, 8), "float32"))
    tupled = training.count_training_flops(model, (np.zeros((32, 8), "float32"), np.zeros((32, 2), "float32")))
    assert tupled == alone


@pytest.mark.parametrize("equation", ["abc,cd->abd", "...c,cd->...d"])
def test_einsum_is_counted_like_a_matmul(equation):
    # TensorFlow registers no FLOPs for Einsum (Keras' attention and EinsumDense
    # use it); the benchmark registers 2 per multiply-add: [1, 5, 8] x [8, 4].
    inputs = keras.Input((5, 8))
    outputs = keras.layers.EinsumDense(equation, output_shape=(None, 4) if equation[0] == "a" else 4)(inputs)
    flops = training.count_training_flops(keras.Model(inputs, outputs), np.zeros((2, 5, 8), "float32"))
    assert flops["forward"] == 2 * 5 * 8 * 4


def test_recurrent_layers_are_counted_at_every_time_step():
    # Traced as a While loop, the profiler would see one step whatever the
    # length; unrolled, each step adds the same cost, at least the two
    # matmuls of the LSTM cell (x: 3 -> 4*5 gates, h: 5 -> 4*5 gates).
    def lstm_flops(steps):
        inputs = keras.Input((steps, 3))
        model = keras.Model(inputs, keras.layers.LSTM(5)(inputs))
        flops = training.count_training_flops(model, np.zeros((1, steps, 3), "float32"))
        assert flops["uncounted"] == []
        assert all(not layer.unroll for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN))
        return flops["forward"]

    two, four, six = lstm_flops(2), lstm_flops(4), lstm_flops(6)
    per_step = (four - two) // 2
    assert six - four == four - two
    assert per_step >= 2 * 3 * 20 + 2 * 5 * 20


def test_mixed_precision_variant_computes_in_bfloat16_with_float32_output():
    model, jit_on = training.build_mixed("cross_attention_classifier", "tiny", seed=0, policy="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert not jit_on
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.compute_dtype == "bfloat16"
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    x = {name: np.zeros((2, *spec.shape[1:]), spec.dtype) for name, spec in model.input.items()}
    assert keras.backend.standardize_dtype(model(x, training=False)["scores"].dtype) == "float32"
    assert model.optimizer is not None  # compiled under the policy


def test_resolve_policy_without_a_gpu():
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert training.resolve_policy("auto") == ("mixed_float16" if gpu else "mixed_bfloat16")
    assert training.resolve_policy("none") is None
    assert training.resolve_policy("mixed_float16") == "mixed_float16"


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100-SXM2"),
        ("Tesla V100-PCIE-32GB", "V100"),
    ],
)
def test_gpu_peak_table_matches_the_specific_name_first(name, key):
    assert training.gpu_peak_tflops(name)[0] == key


def test_gpu_peak_table_does_not_guess():
    assert training.gpu_peak_tflops("NVIDIA L40") is None  # not "L4"
    assert training.gpu_peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_mfu_row_without_a_peak_says_why_and_with_one_divides():
    import tensorflow as tf

    result = {"policy": "mixed_bfloat16", "pipeline": 100.0, "mixed": 50.0, "flops": {"train": 3_000_000}}
    if not tf.config.list_physical_devices("GPU"):
        peaks, why = training.peak_flops(None)
        assert peaks is None and why == "no GPU: pass --peak-tflops for a CPU figure"
        assert training.mfu_value(result, peaks, why) == why
    peaks, why = training.peak_flops(0.001)  # 1 GFLOP/s: 3 MFLOP x 100/s = 30%, x 50/s = 15%
    value = training.mfu_value(result, peaks, why)
    assert value.startswith("float32 30% (") and "; mixed_bfloat16 15% (" in value
