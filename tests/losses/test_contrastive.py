import textwrap

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.losses import contrastive_logits, contrastive_loss
from tests.processes import run_script_json


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _numpy_clip_loss(img, txt, scale, duplicates=None):
    """Direct, loop-based computation of CLIP's symmetric cross-entropy."""
    n = len(img)
    logits = scale * img @ txt.T
    total_i2t = total_t2i = 0.0
    for i in range(n):
        row = logits[i].copy()
        col = logits[:, i].copy()
        if duplicates is not None:
            row[duplicates[i]] = -np.inf
            col[duplicates[i]] = -np.inf
        total_i2t += -(row[i] - np.log(np.sum(np.exp(row[np.isfinite(row)]))))
        total_t2i += -(col[i] - np.log(np.sum(np.exp(col[np.isfinite(col)]))))
    return 0.5 * (total_i2t / n + total_t2i / n)


def test_loss_matches_numpy():
    rng = np.random.default_rng(0)
    img = _unit(rng.normal(size=(6, 4))).astype("float32")
    txt = _unit(rng.normal(size=(6, 4))).astype("float32")
    got = float(contrastive_loss(img, txt, 7.5))
    assert got == pytest.approx(_numpy_clip_loss(img.astype(float), txt.astype(float), 7.5), rel=1e-5)


def test_loss_is_symmetric_in_its_two_directions():
    rng = np.random.default_rng(1)
    img = _unit(rng.normal(size=(5, 3))).astype("float32")
    txt = _unit(rng.normal(size=(5, 3))).astype("float32")
    assert float(contrastive_loss(img, txt, 3.0)) == pytest.approx(float(contrastive_loss(txt, img, 3.0)), rel=1e-6)


def test_perfect_alignment_gives_low_loss_and_shuffled_gives_high():
    e = np.eye(4, dtype="float32")
    assert float(contrastive_loss(e, e, 100.0)) < 1e-6
    assert float(contrastive_loss(e, e[::-1], 100.0)) > 50.0


def test_duplicate_keys_are_not_negatives():
    rng = np.random.default_rng(2)
    img = _unit(rng.normal(size=(4, 3))).astype("float32")
    txt = _unit(rng.normal(size=(4, 3))).astype("float32")
    keys = np.array([[5, 1], [7, 0], [5, 1], [9, 9]], "int32")  # texts 0 and 2 identical
    dup = np.zeros((4, 4), bool)
    dup[0, 2] = dup[2, 0] = True
    got = float(contrastive_loss(img, txt, 4.0, keys=keys))
    assert got == pytest.approx(_numpy_clip_loss(img.astype(float), txt.astype(float), 4.0, dup), rel=1e-5)
    assert got != pytest.approx(float(contrastive_loss(img, txt, 4.0)), rel=1e-3)


def test_negative_texts_are_extra_image_to_text_columns_only():
    rng = np.random.default_rng(5)
    img = _unit(rng.normal(size=(4, 3)))
    txt = _unit(rng.normal(size=(4, 3)))
    neg = _unit(rng.normal(size=(4, 3)))
    mask = np.array([True, False, True, True])
    scale = 3.0
    # Direct: each image's softmax runs over the 4 texts and the 3 unmasked negatives.
    i2t = 0.0
    for i in range(4):
        row = np.concatenate([scale * img[i] @ txt.T, scale * img[i] @ neg[mask].T])
        i2t += -(row[i] - np.log(np.sum(np.exp(row))))
    t2i = 0.0
    for j in range(4):
        col = scale * txt[j] @ img.T
        t2i += -(col[j] - np.log(np.sum(np.exp(col))))
    expected = 0.5 * (i2t / 4 + t2i / 4)
    f = lambda a: a.astype("float32")  # noqa: E731
    got = float(contrastive_loss(f(img), f(txt), scale, negative_text_embeddings=f(neg), negative_mask=mask))
    assert got == pytest.approx(expected, rel=1e-5)
    i2t_logits, t2i_logits, _ = contrastive_logits(f(img), f(txt), scale, negative_text_embeddings=f(neg),
                                                   negative_mask=mask)
    assert i2t_logits.shape == (4, 8) and t2i_logits.shape == (4, 4)
    assert float(np.max(np.asarray(i2t_logits)[:, 5])) < -1e8  # the masked negative
    # Without a mask every negative counts, and a negative equal to the positive caption raises the loss.
    assert float(contrastive_loss(f(img), f(txt), scale, negative_text_embeddings=f(txt))) > float(
        contrastive_loss(f(img), f(txt), scale)
    ) + 0.1


def test_a_negative_equal_to_an_images_own_text_is_not_its_negative():
    rng = np.random.default_rng(6)
    img = _unit(rng.normal(size=(3, 4))).astype("float32")
    txt = _unit(rng.normal(size=(3, 4))).astype("float32")
    keys = np.array([[1, 2], [3, 4], [5, 6]], "int32")
    # Image 0's edit reads like image 2's text: masked in row 2 only, by its key.
    neg = np.stack([txt[2], _unit(rng.normal(size=4)), _unit(rng.normal(size=4))]).astype("float32")
    neg_keys = np.array([[5, 6], [7, 8], [9, 9]], "int32")
    i2t, _, _ = contrastive_logits(img, txt, 2.0, keys=keys, negative_text_embeddings=neg, negative_keys=neg_keys)
    i2t = np.asarray(i2t)
    assert i2t[2, 3] < -1e8 and i2t[0, 3] > -1e8 and i2t[1, 3] > -1e8
    assert np.all(i2t[:, 4:] > -1e8)
    # Without keys nothing is masked.
    i2t, _, _ = contrastive_logits(img, txt, 2.0, negative_text_embeddings=neg, negative_keys=neg_keys)
    assert np.all(np.asarray(i2t) > -1e8)


def test_logits_and_labels():
    img = np.eye(3, dtype="float32")
    i2t, t2i, labels = contrastive_logits(img, img, 2.0)
    np.testing.assert_allclose(np.asarray(i2t), 2.0 * np.eye(3))
    np.testing.assert_array_equal(np.asarray(labels), [0, 1, 2])


def test_label_smoothing_raises_the_loss_of_a_perfect_model():
    e = np.eye(4, dtype="float32")
    assert float(contrastive_loss(e, e, 20.0, label_smoothing=0.1)) > float(contrastive_loss(e, e, 20.0)) + 0.1
    with pytest.raises(ValueError, match="label_smoothing"):
        contrastive_loss(e, e, 1.0, label_smoothing=1.0)


def test_gradient_flows_to_both_towers():
    img = tf.Variable(_unit(np.random.default_rng(3).normal(size=(3, 2))).astype("float32"))
    txt = tf.Variable(_unit(np.random.default_rng(4).normal(size=(3, 2))).astype("float32"))
    with tf.GradientTape() as tape:
        loss = contrastive_loss(img, txt, 5.0)
    g_img, g_txt = tape.gradient(loss, [img, txt])
    assert float(tf.reduce_sum(tf.abs(g_img))) > 0 and float(tf.reduce_sum(tf.abs(g_txt))) > 0


_TWO_REPLICA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from mmzoo.losses import contrastive_loss

    rng = np.random.default_rng(0)
    x_img = rng.normal(size=(8, 5)).astype("float32")
    x_txt = rng.normal(size=(8, 5)).astype("float32")
    keys = rng.integers(0, 3, size=(8, 2)).astype("int32")  # duplicates across replicas
    w_init = rng.normal(size=(5, 4)).astype("float32")
    scale = 6.0
    x_neg = rng.normal(size=(8, 5)).astype("float32")
    neg_mask = np.array([True, False, True, True, False, True, True, True])
    neg_keys = keys[::-1].copy()  # some edits equal texts of the other replica

    def embed(x, w):
        return tf.math.l2_normalize(tf.matmul(x, w), axis=-1)

    # Single device on the whole global batch.
    w = tf.Variable(w_init)
    with tf.GradientTape() as tape:
        single = contrastive_loss(embed(x_img, w), embed(x_txt, w), scale, keys=keys)
    single_grad = tape.gradient(single, w).numpy()
    single_neg = contrastive_loss(embed(x_img, w), embed(x_txt, w), scale, keys=keys,
                                  negative_text_embeddings=embed(x_neg, w), negative_mask=neg_mask,
                                  negative_keys=neg_keys)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        wd = tf.Variable(w_init)

    def shard(ctx):
        i = ctx.replica_id_in_sync_group
        sl = slice(4 * i, 4 * i + 4)
        return x_img[sl], x_txt[sl], keys[sl], x_neg[sl], neg_mask[sl], neg_keys[sl]

    values = strategy.experimental_distribute_values_from_function(shard)

    @tf.function
    def step(values):
        def replica_fn(xi, xt, k, xn, m, nk):
            with tf.GradientTape() as tape:
                loss = contrastive_loss(embed(xi, wd), embed(xt, wd), scale, keys=k)
                scaled = loss / tf.distribute.get_replica_context().num_replicas_in_sync
            with_negatives = contrastive_loss(embed(xi, wd), embed(xt, wd), scale, keys=k,
                                              negative_text_embeddings=embed(xn, wd), negative_mask=m,
                                              negative_keys=nk)
            return loss, tape.gradient(scaled, wd), with_negatives
        loss, grad, with_negatives = strategy.run(replica_fn, args=values)
        return (strategy.reduce("MEAN", loss, axis=None), strategy.reduce("SUM", grad, axis=None),
                strategy.reduce("MEAN", with_negatives, axis=None))

    global_loss, global_grad, global_neg = step(values)

    # Without gathering, each replica only sees its own 4 negatives: a different loss.
    @tf.function
    def local_step(values):
        fn = lambda xi, xt, k, xn, m, nk: contrastive_loss(embed(xi, wd), embed(xt, wd), scale, keys=k, gather=False)
        return strategy.reduce("MEAN", strategy.run(fn, args=values), axis=None)

    print(json.dumps({
        "single": float(single), "global": float(global_loss), "local": float(local_step(values)),
        "single_neg": float(single_neg), "global_neg": float(global_neg),
        "grad_max_diff": float(np.max(np.abs(global_grad.numpy() - single_grad))),
        "grad_norm": float(np.linalg.norm(single_grad)),
    }))
    """
)


def test_cross_replica_negatives_on_two_logical_cpus(tmp_path):
    result = run_script_json(tmp_path / "two_replicas.py", _TWO_REPLICA_SCRIPT, timeout=300)
    assert result["global"] == pytest.approx(result["single"], rel=1e-5)
    # NegCLIP negatives are gathered too: every image sees all 6 unmasked ones.
    assert result["global_neg"] == pytest.approx(result["single_neg"], rel=1e-5)
    assert result["single_neg"] > result["single"] + 1e-3
    assert abs(result["local"] - result["single"]) > 1e-3
    assert result["grad_norm"] > 1e-4
    assert result["grad_max_diff"] < 1e-5 * max(1.0, result["grad_norm"])
