import numpy as np
import pytest
import tensorflow as tf

from mmzoo.generation import beam_search, generate, greedy_search, sample_search

PAD, UNK, START, END, A, B = range(6)


def _bigram_step(rows):
    """A step function whose next-token distribution depends on the previous token only."""
    table = tf.math.log(tf.constant(rows, tf.float32) + 1e-9)

    def step(token_ids, index, state, constants):
        return tf.gather(table, token_ids), state, {"probe": tf.one_hot(token_ids, 6)}

    return step


def _bigram_table(after_start, after_a, after_b):
    """Next-token probabilities over (PAD, UNK, START, END, A, B), one row per
    previous token in that order: [PAD], [UNK] and [END] are followed by [PAD]."""
    to_pad = [1, 0, 0, 0, 0, 0]
    return [to_pad, to_pad, after_start, to_pad, after_a, after_b]


# Greedy is myopic here: START -> A (0.6) then END at 0.3 gives 0.18, while
# START -> B (0.4) then END (1.0) gives 0.4.
MYOPIC = _bigram_table(
    after_start=[0, 0, 0, 0, 0.6, 0.4],
    after_a=[0, 0.1, 0, 0.3, 0.3, 0.3],
    after_b=[0, 0, 0, 1.0, 0, 0],
)
COMMON = dict(batch_size=2, max_length=6, start_id=START, end_id=END, pad_id=PAD)


def test_greedy_picks_the_most_likely_token_and_pads_after_end():
    out = greedy_search(_bigram_step(MYOPIC), **COMMON)
    ids = out["token_ids"].numpy()
    # START -> A, then A's ties (END, A, B at 0.3) go to the lowest id: END.
    np.testing.assert_array_equal(ids, [[A, END, 0, 0, 0, 0]] * 2)
    np.testing.assert_allclose(out["score"], np.log(0.6 * 0.3), rtol=1e-5)


def test_beam_search_beats_greedy_on_a_myopic_case():
    greedy = greedy_search(_bigram_step(MYOPIC), **COMMON)
    beam = beam_search(_bigram_step(MYOPIC), beam_width=2, **COMMON)
    np.testing.assert_array_equal(beam["token_ids"].numpy(), [[B, END, 0, 0, 0, 0]] * 2)
    np.testing.assert_allclose(beam["score"], np.log(0.4), rtol=1e-5)
    assert np.all(beam["score"].numpy() > greedy["score"].numpy() + 0.5)


# An untrained model: [PAD] and [START] are its likeliest tokens after [START].
PAD_LOVER = _bigram_table(
    after_start=[0.5, 0, 0.3, 0, 0.15, 0.05],
    after_a=[0, 0, 0, 1.0, 0, 0],
    after_b=[0, 0, 0, 1.0, 0, 0],
)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_a_live_caption_never_emits_pad_or_start(method):
    # A [PAD] inside a caption cut its text short and was masked out of the Transformer's uncached
    # re-read of the prefix (so the cached and uncached decoders disagreed on an untrained model).
    out = generate(_bigram_step(PAD_LOVER), method=method, beam_width=2, seed=0, **COMMON)
    ids = out["token_ids"].numpy()
    assert ids[:, 0].tolist() == [A, A] if method != "sample" else set(ids[:, 0]) <= {A, B}
    assert np.all(ids[:, 1] == END) and np.all(ids[:, 2:] == PAD)
    if method != "sample":  # log-probabilities over the tokens a caption may hold: 0.15 / (0.15 + 0.05)
        np.testing.assert_allclose(out["score"], np.log(0.75), rtol=1e-4)


def _random_step(seed, vocabulary_size=9, dim=5):
    """A small recurrent "model": the state mixes in each token, logits read the state."""
    rng = np.random.default_rng(seed)
    emb = tf.constant(rng.normal(size=(vocabulary_size, dim)), tf.float32)
    out = tf.constant(rng.normal(size=(dim, vocabulary_size)) * 2, tf.float32)

    def step(token_ids, index, state, constants):
        state = tf.tanh(0.7 * state + tf.gather(emb, token_ids) + constants)
        return tf.matmul(state, out), state, {}

    state = tf.zeros([3, dim])
    constants = tf.constant(rng.normal(size=(3, dim)), tf.float32)
    return step, state, constants


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_equals_greedy(seed):
    step, state, constants = _random_step(seed)
    kwargs = dict(batch_size=3, max_length=7, start_id=2, end_id=3)
    greedy = greedy_search(step, state, constants, **kwargs)
    beam = beam_search(step, state, constants, beam_width=1, **kwargs)
    np.testing.assert_array_equal(beam["token_ids"], greedy["token_ids"])
    np.testing.assert_allclose(beam["score"], greedy["score"], rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_wider_beams_never_score_worse(seed):
    step, state, constants = _random_step(seed)
    kwargs = dict(batch_size=3, max_length=7, start_id=2, end_id=3)
    scores = [beam_search(step, state, constants, beam_width=k, **kwargs)["score"].numpy() for k in (1, 3, 6)]
    assert np.all(scores[1] >= scores[0] - 1e-5) and np.all(scores[2] >= scores[1] - 1e-5)


def test_length_penalty_prefers_longer_captions():
    # START -> END at 0.5 or A; A -> A at 0.9: short wins on log-prob, long on the mean.
    rows = [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0.5, 0.5, 0], [1, 0, 0, 0, 0, 0],
            [0, 0, 0, 0.1, 0.9, 0], [1, 0, 0, 0, 0, 0]]
    kwargs = dict(COMMON, beam_width=3)
    short = beam_search(_bigram_step(rows), length_penalty=0.0, **kwargs)["token_ids"].numpy()
    long = beam_search(_bigram_step(rows), length_penalty=1.0, **kwargs)["token_ids"].numpy()
    assert (short[0] != 0).sum() == 1
    assert (long[0] != 0).sum() > 3


def test_max_length_stops_unfinished_sequences():
    rows = [[0, 0, 0, 0, 1, 0]] * 6  # never ends
    for search in (greedy_search, beam_search):
        out = search(_bigram_step(rows), **dict(COMMON, max_length=4))
        np.testing.assert_array_equal(out["token_ids"].numpy(), [[A, A, A, A]] * 2)


def test_sampling_top_k_one_is_greedy_and_seed_is_deterministic():
    step, state, constants = _random_step(3)
    kwargs = dict(batch_size=3, max_length=7, start_id=2, end_id=3)
    greedy = greedy_search(step, state, constants, **kwargs)
    top1 = sample_search(step, state, constants, top_k=1, **kwargs)
    np.testing.assert_array_equal(top1["token_ids"], greedy["token_ids"])
    a = sample_search(step, state, constants, seed=5, temperature=2.0, **kwargs)
    b = sample_search(step, state, constants, seed=5, temperature=2.0, **kwargs)
    np.testing.assert_array_equal(a["token_ids"], b["token_ids"])


def test_sampling_follows_the_distribution():
    rows = [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0.7, 0.3], [1, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0]]
    out = sample_search(_bigram_step(rows), **dict(COMMON, batch_size=2000), seed=0)
    share_a = np.mean(out["token_ids"].numpy()[:, 0] == A)
    assert 0.65 < share_a < 0.75


def test_extras_are_recorded_per_step_and_follow_the_beams():
    kwargs = dict(COMMON, extras_shapes={"probe": (6,)})
    for out in (greedy_search(_bigram_step(MYOPIC), **kwargs),
                beam_search(_bigram_step(MYOPIC), beam_width=2, **kwargs)):
        probe = out["probe"].numpy()
        assert probe.shape == (2, 6, 6)
        # Step t saw the previous token: START, then the first generated token.
        assert probe[0, 0, START] == 1.0
        assert probe[0, 1, out["token_ids"].numpy()[0, 0]] == 1.0
        np.testing.assert_array_equal(probe[0, 2:], 0.0)


def test_traces_once_in_a_tf_function_for_any_batch_size():
    step, _, _ = _random_step(0)

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32)])
    def decode(constants):
        batch = tf.shape(constants)[0]
        return beam_search(step, tf.zeros([batch, 5]), constants, batch_size=batch, max_length=5,
                           start_id=2, end_id=3, beam_width=3)

    for batch in (1, 4):
        out = decode(tf.random.normal([batch, 5]))
        assert out["token_ids"].shape == (batch, 5)
    assert decode.experimental_get_tracing_count() == 1


def test_errors():
    step = _bigram_step(MYOPIC)
    with pytest.raises(ValueError, match="method=.nucleus."):
        generate(step, method="nucleus", **COMMON)
    with pytest.raises(ValueError, match="max_length=0"):
        greedy_search(step, **dict(COMMON, max_length=0))
    with pytest.raises(ValueError, match="beam_width=0"):
        beam_search(step, beam_width=0, **COMMON)
    with pytest.raises(ValueError, match="temperature=0"):
        sample_search(step, temperature=0, **COMMON)
    with pytest.raises(ValueError, match="top_k=-1"):
        sample_search(step, top_k=-1, **COMMON)
