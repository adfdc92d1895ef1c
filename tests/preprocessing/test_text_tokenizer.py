import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmzoo.preprocessing import RESERVED_TOKENS, TextTokenizer
from tests.harness import tf_function_call

VOCAB = ["a", "red", "blue", "circle", "square", "left", "of", "."]
CORPUS = [
    "a red circle left of a blue square.",
    "a blue circle",
    "the red square is left of the circle",
    "two red triangles and a circle",
    "circles and squares and triangles",
]


def ids(tokenizer, texts):
    return tokenizer(tf.constant(texts)).numpy().tolist()


def test_reserved_ids_and_vocabulary():
    tok = TextTokenizer(VOCAB, sequence_length=8)
    assert tok.vocabulary[:4] == list(RESERVED_TOKENS) == ["[PAD]", "[UNK]", "[START]", "[END]"]
    assert (tok.pad_id, tok.unk_id, tok.start_id, tok.end_id) == (0, 1, 2, 3)
    assert tok.vocabulary_size == len(VOCAB) + 4
    assert tok.token_to_id(["[PAD]", "[UNK]", "[START]", "[END]", "red"]).numpy().tolist() == [0, 1, 2, 3, 5]
    # Reserved tokens given in the vocabulary are moved to the front, not duplicated.
    tok2 = TextTokenizer(["red", "[END]", "[PAD]", "blue"])
    assert tok2.vocabulary == ["[PAD]", "[UNK]", "[START]", "[END]", "red", "blue"]


def test_word_mode_lookup_padding_and_normalisation():
    tok = TextTokenizer(VOCAB, sequence_length=8)
    out = tok(tf.constant(["A red circle, left of a BLUE square.", "ＲＥＤ   green", ""]))
    assert out.dtype == tf.int32 and out.shape == (3, 8)
    assert out.numpy().tolist() == [
        [4, 5, 7, 1, 9, 10, 4, 6],  # truncated at 8; "," is [UNK]
        [5, 1, 0, 0, 0, 0, 0, 0],  # NFKC full-width + case fold; unknown word
        [0] * 8,
    ]
    cased = TextTokenizer(VOCAB, sequence_length=3, lowercase=False)
    assert ids(cased, ["Red red"]) == [[1, 5, 0]]


def test_add_start_end_and_truncation():
    tok = TextTokenizer(VOCAB, sequence_length=5, add_start_end=True)
    assert ids(tok, ["red", "a red blue circle square", ""]) == [
        [2, 5, 3, 0, 0],
        [2, 4, 5, 6, 3],  # [END] kept inside sequence_length
        [2, 3, 0, 0, 0],
    ]


def test_very_long_text_is_truncated():
    tok = TextTokenizer(VOCAB, sequence_length=16)
    text = ("red circle " * 10_000)[:100_000]
    assert len(text) == 100_000
    out = tok(tf.constant([text, "blue"])).numpy()
    assert out.shape == (2, 16)
    assert out[0].tolist() == [5, 7] * 8
    assert out[1].tolist() == [6] + [0] * 15


def test_invalid_utf8_is_replaced_not_an_error():
    tok = TextTokenizer(VOCAB, sequence_length=6)
    out = tok(tf.constant([b"red \xff\xfe blue", b"\xc3"]))
    # Invalid bytes become U+FFFD, a symbol token of its own -> [UNK].
    assert out.numpy().tolist() == [[5, 1, 1, 6, 0, 0], [1, 0, 0, 0, 0, 0]]


def test_input_ranks():
    tok = TextTokenizer(VOCAB, sequence_length=4)
    assert tok(tf.constant("red blue")).numpy().tolist() == [5, 6, 0, 0]
    assert tok(tf.constant([["red"], ["blue"]])).numpy().tolist() == [[5, 0, 0, 0], [6, 0, 0, 0]]
    assert tok(["red"]).numpy().tolist() == [[5, 0, 0, 0]]
    assert tok(tf.constant([], tf.string)).shape == (0, 4)
    with pytest.raises(ValueError, match="string tensor"):
        tok(tf.constant([1, 2]))
    with pytest.raises(ValueError, match="shape"):
        tok(tf.constant([["a", "b"]]))


def test_detokenize_and_id_conversions():
    tok = TextTokenizer(VOCAB, sequence_length=8, add_start_end=True)
    texts = ["a red circle left of a blue square .", "blue"]
    token_ids = tok(tf.constant(texts))
    assert tok.detokenize(token_ids).numpy().tolist() == [b"a red circle left of a", b"blue"]
    # Stops at the first [END], drops [PAD]/[START], keeps [UNK], bad ids -> [UNK].
    out = tok.detokenize(tf.constant([[2, 5, 0, 1, 3, 6, 6], [999, -1, 6, 0, 0, 0, 0]]))
    assert out.numpy().tolist() == [b"red [UNK]", b"[UNK] [UNK] blue"]
    assert tok.detokenize(tf.constant([5, 6])).numpy() == b"red blue"
    assert tok.id_to_token([[4, 5], [0, 100]]).numpy().tolist() == [[b"a", b"red"], [b"[PAD]", b"[UNK]"]]
    assert tok.token_to_id([["red", "nope"]]).numpy().tolist() == [[5, 1]]


def test_wordpiece_mode():
    vocab = ["a", "red", "circle", "##s", "un", "##known", "."]
    tok = TextTokenizer(vocab, mode="wordpiece", sequence_length=8)
    out = ids(tok, ["Red circles, unknown zzz."])
    assert out == [[5, 6, 7, 1, 8, 9, 1, 10]]
    assert tok.detokenize(tf.constant(out)).numpy().tolist() == [b"red circles [UNK] unknown [UNK] ."]
    # Word mode does not split into pieces: the whole word is [UNK].
    word = TextTokenizer(vocab, mode="word", sequence_length=3)
    assert ids(word, ["circles circle"]) == [[1, 6, 0]]


def test_from_corpus_word():
    tok = TextTokenizer.from_corpus(CORPUS, vocabulary_size=8, sequence_length=6)
    # 4 reserved + 4 most frequent words; ties broken alphabetically.
    assert tok.vocabulary == ["[PAD]", "[UNK]", "[START]", "[END]", "a", "circle", "and", "red"]
    assert tok.mode == "word" and tok.sequence_length == 6
    ds = tf.data.Dataset.from_tensor_slices(CORPUS)
    from_ds = TextTokenizer.from_corpus(ds, vocabulary_size=8, sequence_length=6)
    assert from_ds.vocabulary == tok.vocabulary
    full = TextTokenizer.from_corpus(CORPUS, vocabulary_size=1000, add_start_end=True, sequence_length=12)
    assert full.add_start_end
    assert "triangles" in full.vocabulary and "." in full.vocabulary
    round_trip = full.detokenize(full(tf.constant(CORPUS[:2]))).numpy().tolist()
    assert round_trip == [b"a red circle left of a blue square .", b"a blue circle"]
    with pytest.raises(ValueError, match="vocabulary_size"):
        TextTokenizer.from_corpus(CORPUS, vocabulary_size=4)


def test_from_corpus_wordpiece_round_trip():
    corpus = CORPUS * 4 + ["Unusual WORDS like triangulation appear"]
    tok = TextTokenizer.from_corpus(corpus, mode="wordpiece", vocabulary_size=60, sequence_length=64)
    assert tok.mode == "wordpiece"
    assert tok.vocabulary[:4] == list(RESERVED_TOKENS)
    assert 4 < tok.vocabulary_size <= 60
    assert any(t.startswith("##") for t in tok.vocabulary)
    token_ids = tok(tf.constant(corpus[:5] + [corpus[-1]])).numpy()
    assert (token_ids[:, 0] != 0).all()
    texts = tok.detokenize(token_ids).numpy().tolist()
    assert texts[0] == b"a red circle left of a blue square ."
    assert texts[-1] == b"unusual words like triangulation appear"


def test_constructor_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        TextTokenizer(VOCAB, mode="bpe")
    with pytest.raises(ValueError, match="Received: sequence_length=0"):
        TextTokenizer(VOCAB, sequence_length=0)
    with pytest.raises(ValueError, match="at least 3 with add_start_end"):
        TextTokenizer(VOCAB, sequence_length=2, add_start_end=True)
    with pytest.raises(ValueError, match="duplicates"):
        TextTokenizer(["a", "b", "a"])
    with pytest.raises(ValueError, match="empty strings"):
        TextTokenizer(["a", ""])
    with pytest.raises(ValueError, match="list of strings"):
        TextTokenizer("abc")


def test_config_and_output_shape():
    tok = TextTokenizer(VOCAB, mode="wordpiece", sequence_length=7, lowercase=False, add_start_end=True, name="t")
    config = tok.get_config()
    assert config["vocabulary"] == tok.vocabulary
    for key in ("mode", "sequence_length", "lowercase", "add_start_end"):
        assert config[key] == getattr(tok, key)
    clone = TextTokenizer.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(TextTokenizer) == "mmzoo>TextTokenizer"
    assert tok.compute_output_shape((None,)) == (None, 7)
    assert tok.compute_output_shape((3, 1)) == (3, 7)
    symbolic = tok(keras.Input(shape=(), dtype="string"))
    assert tuple(symbolic.shape) == (None, 7) and symbolic.dtype == "int32"


def test_keras_round_trip_safe_mode(tmp_path):
    tok = TextTokenizer(VOCAB, sequence_length=6, add_start_end=True)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    token_ids = tok(inputs)
    embedded = keras.layers.Embedding(tok.vocabulary_size, 4)(token_ids)
    model = keras.Model(inputs, {"token_ids": token_ids, "pooled": keras.layers.GlobalAveragePooling1D()(embedded)})
    data = tf.constant(["a red circle", "blue square left"])
    expected = model(data)
    path = os.path.join(tmp_path, "tok.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    got = reloaded(data)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
    np.testing.assert_allclose(got["pooled"], expected["pooled"], atol=1e-6)
    layer = [l for l in reloaded.layers if isinstance(l, TextTokenizer)][0]
    assert layer.vocabulary == tok.vocabulary


def test_tf_function_and_tf_data():
    tok = TextTokenizer(VOCAB, mode="wordpiece", sequence_length=5)
    texts = ["red circle", "a blue square .", "nothing"]
    expected = tok(tf.constant(texts)).numpy()
    np.testing.assert_array_equal(tf_function_call(tok, tf.constant(texts)), expected)
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tok)
    np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), expected)
    per_element = tf.data.Dataset.from_tensor_slices(texts).map(tok)
    np.testing.assert_array_equal(np.stack(list(per_element.as_numpy_iterator())), expected)


@pytest.mark.parametrize("mode", ["word", "wordpiece"])
def test_export_archive_saved_model(tmp_path, mode):
    tok = TextTokenizer(VOCAB + ["##s"], mode=mode, sequence_length=6, add_start_end=True)
    archive = keras.export.ExportArchive()
    archive.track(tok)
    archive.add_endpoint(
        "tokenize", lambda s: {"token_ids": tok(s)}, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    archive.add_endpoint(
        "detokenize", lambda t: {"text": tok.detokenize(t)}, input_signature=[tf.TensorSpec([None, None], tf.int32)]
    )
    path = os.path.join(tmp_path, "tokenizer_savedmodel")
    archive.write_out(path, verbose=False)
    loaded = tf.saved_model.load(path)
    texts = tf.constant(["A red circles", "blue square left of", b"bad \xff"])
    expected = tok(texts)
    got = loaded.tokenize(texts)["token_ids"]
    np.testing.assert_array_equal(got, expected)
    assert loaded.detokenize(got)["text"].numpy().tolist() == tok.detokenize(expected).numpy().tolist()


@pytest.mark.slow
def test_saved_model_loads_with_tensorflow_and_tensorflow_text_only(tmp_path):
    import subprocess
    import sys

    tok = TextTokenizer(VOCAB + ["##s"], mode="wordpiece", sequence_length=6)
    archive = keras.export.ExportArchive()
    archive.track(tok)
    archive.add_endpoint("tokenize", lambda s: tok(s), input_signature=[tf.TensorSpec([None], tf.string)])
    path = os.path.join(tmp_path, "standalone")
    archive.write_out(path, verbose=False)
    expected = tok(tf.constant(["red circles"])).numpy().tolist()
    script = (
        "import sys, tensorflow as tf, tensorflow_text\n"
        "loaded = tf.saved_model.load(sys.argv[1])\n"
        "print(loaded.tokenize(tf.constant(['red circles'])).numpy().tolist())\n"
        "assert 'mmzoo' not in sys.modules\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script, path], capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(expected)
