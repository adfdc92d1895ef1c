"""The keras_hub text tower: a tiny keras-hub BERT with random weights, saved as a local preset."""

import keras
import keras_hub
import numpy as np
import pytest

import mmzoo
from mmzoo.preprocessing import TextTokenizer
from mmzoo.towers import TEXT_TOWERS, build_text_tower
from mmzoo.towers.keras_hub import (
    BackboneInputs,
    build_keras_hub_text_tower,
    id_table,
    keras_hub_tokenizer,
    max_sequence_length,
)
from tests.harness import assert_export_serves_the_model, assert_model_roundtrip
from tests.towers.tower_checks import check_fit_step, check_output_contract

# A BERT-style vocabulary: [PAD] first, [UNK]/[CLS]/[SEP] past unused slots (as in bert-base), so
# the tower's id mapping is not the identity.
VOCABULARY = (
    ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + ["the", "quick", "brown", "fox", "cafe", "café", "Café", "naive", "##s", "jump", "##ed"]
    + [".", ",", "!", "'", "€", "a", "b", "c", "##a", "##b", "##c", "ss", "ß", "©", "$", "中", "文"]
)
TEXTS = [
    "The quick brown fox jumped.",
    "Café naïve CAFE, ß!",
    "foxes'  jumps",
    "a€b c©  $a\u200db",
    "中文abc",
    "",
    "abc" * 40,
    "the the the the the the the the the the the the the the",
]
LENGTH = 12


def _save_preset(path, lowercase=True, strip_accents=True, max_sequence_length=32):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=max_sequence_length,
    )
    tokenizer = keras_hub.models.BertTokenizer(VOCABULARY, lowercase=lowercase, strip_accents=strip_accents)
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return _save_preset(tmp_path_factory.mktemp("tiny_bert"))


@pytest.mark.parametrize("lowercase,strip_accents", [(True, True), (True, False), (False, False), (False, True)])
def test_tokenizer_matches_keras_hub(tmp_path, lowercase, strip_accents):
    path = _save_preset(tmp_path, lowercase, strip_accents)
    hub_tokenizer = keras_hub.models.BertTokenizer.from_preset(path)
    packer = keras_hub.models.BertTextClassifierPreprocessor(hub_tokenizer, sequence_length=LENGTH)
    expected = packer(TEXTS)["token_ids"].numpy()
    tokenizer = keras_hub_tokenizer(path, sequence_length=LENGTH)
    table = np.array(id_table(VOCABULARY, {"pad": 0, "unk": 4, "start": 5, "end": 6}))
    np.testing.assert_array_equal(table[tokenizer(TEXTS).numpy()], expected)


def test_tokenizer_config_roundtrip(preset):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    clone = TextTokenizer.from_config(tokenizer.get_config())
    assert (clone.pretokenizer, clone.strip_accents, clone.lowercase) == ("bert", True, True)
    np.testing.assert_array_equal(clone(TEXTS).numpy(), tokenizer(TEXTS).numpy())


def test_strip_accents_in_mmzoo_pretokenizer():
    tokenizer = TextTokenizer(["cafe", "naive"], sequence_length=3, strip_accents=True)
    assert tokenizer(["Café naïve"]).numpy().tolist() == [[4, 5, 0]]


def test_registered():
    assert TEXT_TOWERS["keras_hub"] is build_keras_hub_text_tower


def test_tower_contract_and_fit_step(preset):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    tower = build_text_tower("keras_hub", tokenizer.vocabulary_size, LENGTH, preset=preset, trainable=True)
    ids = tokenizer(TEXTS).numpy()
    out = check_output_contract(tower, ids, 8, LENGTH, 8)
    np.testing.assert_array_equal(out["mask"], ids != 0)
    check_fit_step(tower, ids)


def test_backbone_sees_bert_inputs(preset):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    hub_tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    expected = keras_hub.models.BertTextClassifierPreprocessor(hub_tokenizer, sequence_length=LENGTH)(TEXTS)
    table = id_table(VOCABULARY, {"pad": 0, "unk": 4, "start": 5, "end": 6})
    got = BackboneInputs(table)(tokenizer(TEXTS))
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]))
    # The tower's tokens are the backbone's sequence output on keras-hub's own inputs.
    tower = build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=preset, pooling="pooler")
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    reference = backbone({k: np.asarray(v) for k, v in expected.items()})
    out = tower(tokenizer(TEXTS))
    np.testing.assert_allclose(out["tokens"], reference["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(out["pooled"], reference["pooled_output"], atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_and_projection(preset, pooling):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    tower = build_keras_hub_text_tower(
        tokenizer.vocabulary_size, LENGTH, preset=preset, pooling=pooling, dim=4, dropout=0.1, trainable=False
    )
    check_output_contract(tower, tokenizer(TEXTS).numpy(), 4, LENGTH, 4)
    assert not tower.get_layer("bert_backbone").trainable


def test_refusals(preset):
    with pytest.raises(ValueError, match="needs a preset.*Received: preset=None"):
        build_keras_hub_text_tower(10, LENGTH)
    with pytest.raises(ValueError, match="keras_hub_tokenizer.*Received: vocabulary_size=10"):
        build_keras_hub_text_tower(10, LENGTH, preset=preset)
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    with pytest.raises(ValueError, match="max_sequence_length \\(32\\).*Received: sequence_length=64"):
        build_keras_hub_text_tower(tokenizer.vocabulary_size, 64, preset=preset)


def test_zoo_model_trains_and_roundtrips(preset, tmp_path):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    model = mmzoo.build(
        "concat_classifier", preset="tiny", num_classes=2, image_size=(32, 32), tokenizer=tokenizer,
        text_tower="keras_hub", text_tower_kwargs={"preset": preset, "trainable": True},
    )
    model.compile()
    inputs = model.preprocess(np.zeros((4, 32, 32, 3), "float32"), TEXTS[:4])
    backbone = model.get_layer("text_tower").get_layer("bert_backbone")
    before = [np.array(w) for w in backbone.trainable_weights]
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    assert any(not np.allclose(b, np.array(w)) for b, w in zip(before, backbone.trainable_weights))
    reloaded = assert_model_roundtrip(model, inputs, tmp_path)
    assert reloaded.tokenizer.get_config() == model.tokenizer.get_config()


def test_backbone_frozen_by_default(preset):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    tower = build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=preset)
    assert not tower.get_layer("bert_backbone").trainable and tower.trainable_weights == []
    projected = build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=preset, dim=4)
    assert {w.path.split("/")[0] for w in projected.trainable_weights} == {"token_projection", "pooled_projection"}


def test_default_zoo_model_trains_only_fusion_and_head(preset):
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    model = mmzoo.build(
        "concat_classifier", preset="tiny", num_classes=2, image_size=(32, 32), tokenizer=tokenizer,
        text_tower="keras_hub", text_tower_kwargs={"preset": preset},
    )
    model.compile()
    inputs = model.preprocess(np.zeros((4, 32, 32, 3), "float32"), TEXTS[:4])
    tower = model.get_layer("text_tower")
    tower_ids = {id(w) for w in tower.weights}
    assert not tower_ids & {id(w) for w in model.trainable_weights}
    frozen = [np.array(w) for w in tower.weights]
    rest = [w for w in model.trainable_weights if id(w) not in tower_ids]
    before = [np.array(w) for w in rest]
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    for b, w in zip(frozen, tower.weights):
        np.testing.assert_array_equal(b, np.array(w))
    assert any(not np.allclose(b, np.array(w)) for b, w in zip(before, rest))


def test_export_serves_raw_text_with_core_ops(preset, tmp_path):
    from tests.export.tiny_models import random_images

    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    model = mmzoo.build(
        "concat_classifier", preset="tiny", num_classes=2, image_size=(32, 32), tokenizer=tokenizer,
        text_tower="keras_hub", text_tower_kwargs={"preset": preset},
    )
    assert_export_serves_the_model(model, tmp_path / "bert_classifier", random_images(2, size=(32, 32), seed=3), TEXTS[:2])


def test_models_take_the_towers_tokenizer(tmp_path):
    from mmzoo.towers import tower_tokenizer

    preset = _save_preset(tmp_path, max_sequence_length=64)
    assert tower_tokenizer("lstm", {}) is None  # any vocabulary does
    with pytest.raises(ValueError, match="needs text_tower_kwargs=\\{'preset': ...\\}"):
        tower_tokenizer("keras_hub", {})
    expected = keras_hub_tokenizer(preset, sequence_length=16).get_config()
    for name, labels in (("concat_classifier", {"num_classes": 2}), ("dual_encoder", {})):
        model = mmzoo.build(name, preset="tiny", image_size=(16, 16), text_tower="keras_hub",
                            text_tower_kwargs={"preset": preset, "pooling": "cls"}, **labels)
        config = model.tokenizer.get_config()
        assert config["vocabulary"] == expected["vocabulary"] and config["pretokenizer"] == "bert", name
        assert model.sequence_length == 64  # DEFAULT_SEQUENCE_LENGTH; pass a tokenizer for another length
    # A backbone with fewer positions sets the automatic length (an explicit longer one is refused when built).
    short = _save_preset(tmp_path / "short", max_sequence_length=24)
    assert max_sequence_length(short) == 24 and max_sequence_length(preset) == 64
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16),
                        text_tower="keras_hub", text_tower_kwargs={"preset": short})
    assert model.sequence_length == 24
    with pytest.raises(ValueError, match=r"at most the backbone's max_sequence_length \(24\)"):
        mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16),
                    tokenizer=keras_hub_tokenizer(short, 32), text_tower="keras_hub",
                    text_tower_kwargs={"preset": short})


def test_build_for_data_keeps_the_pretrained_vocabulary(preset):
    from mmzoo.data.records import Record
    from mmzoo.training import build_for_data

    records = [Record(image="a.png", text="a new word", label="yes"), Record(image="b.png", text="zzz", label="no")]
    model = build_for_data("concat_classifier", records, preset="tiny", overrides={
        "image_size": [16, 16], "text_tower": "keras_hub", "text_tower_kwargs": {"preset": preset},
        "sequence_length": 20})
    assert model.tokenizer.get_config()["vocabulary"] == keras_hub_tokenizer(preset).get_config()["vocabulary"]
    assert model.sequence_length == 20 and model.label_names == ["no", "yes"]


# --- A Hugging Face BERT directory, written by hand as `transformers` saves one -----------------

HF_DIMS = {"hidden": 8, "intermediate": 16, "positions": 64, "types": 2}


def _hf_tensors(prefix="", seed=0):
    """Random float32 tensors under the parameter names (and shapes) of transformers' BertModel."""
    rng = np.random.default_rng(seed)
    h, i = HF_DIMS["hidden"], HF_DIMS["intermediate"]
    shapes = {
        "embeddings.word_embeddings.weight": (len(VOCABULARY), h),
        "embeddings.position_embeddings.weight": (HF_DIMS["positions"], h),
        "embeddings.token_type_embeddings.weight": (HF_DIMS["types"], h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,),
    }
    layer = "encoder.layer.0."
    for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
        shapes[f"{layer}{name}.weight"], shapes[f"{layer}{name}.bias"] = (h, h), (h,)
    shapes.update({
        f"{layer}attention.output.LayerNorm.weight": (h,), f"{layer}attention.output.LayerNorm.bias": (h,),
        f"{layer}intermediate.dense.weight": (i, h), f"{layer}intermediate.dense.bias": (i,),  # torch: [out, in]
        f"{layer}output.dense.weight": (h, i), f"{layer}output.dense.bias": (h,),
        f"{layer}output.LayerNorm.weight": (h,), f"{layer}output.LayerNorm.bias": (h,),
    })
    return {prefix + k: rng.normal(0.0, 0.5, shape).astype("float32") for k, shape in shapes.items()}


def _save_hf_dir(path, tokenizer_config, prefix="", tokenizer_json=False):
    """config.json, model.safetensors, vocab.txt and tokenizer_config.json (+ the fast tokenizer's
    tokenizer.json that transformers also writes, when ``tokenizer_json``). Returns the tensors."""
    import json

    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(VOCABULARY),
        "hidden_size": HF_DIMS["hidden"], "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": HF_DIMS["intermediate"], "max_position_embeddings": HF_DIMS["positions"],
        "type_vocab_size": HF_DIMS["types"], "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    tensors = _hf_tensors(prefix)
    if prefix:  # a BertForPreTraining-style checkpoint also holds heads the converter skips
        tensors["cls.predictions.bias"] = np.zeros(len(VOCABULARY), "float32")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "vocab.txt").write_text("".join(f"{token}\n" for token in VOCABULARY), encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]", "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    (path / "tokenizer_config.json").write_text(json.dumps({**special, **tokenizer_config}), encoding="utf-8")
    if tokenizer_json:
        fast = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                           "strip_accents": None, "lowercase": tokenizer_config.get("do_lower_case", True)},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None, "decoder": None,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(VOCABULARY)}},
        }
        (path / "tokenizer.json").write_text(json.dumps(fast), encoding="utf-8")
    return tensors


HF_SPECIAL_IDS = {"pad": 0, "unk": 4, "start": 5, "end": 6}
ACCENT_FREE = [text for text in TEXTS if text.isascii() or "中" in text]


def _hub_ids(path, texts):
    hub_tokenizer = keras_hub.models.Tokenizer.from_preset(str(path))
    assert isinstance(hub_tokenizer, keras_hub.models.BertTokenizer)
    return keras_hub.models.BertTextClassifierPreprocessor(hub_tokenizer, sequence_length=LENGTH)(texts)


@pytest.mark.parametrize("tokenizer_config,tokenizer_json", [
    ({"do_lower_case": True, "strip_accents": None}, False),
    ({"do_lower_case": False}, False),
    ({"do_lower_case": True}, True),
])
def test_hf_directory_tokenizer_matches_keras_hub(tmp_path, tokenizer_config, tokenizer_json):
    _save_hf_dir(tmp_path, tokenizer_config, tokenizer_json=tokenizer_json)
    tokenizer = keras_hub_tokenizer(str(tmp_path), sequence_length=LENGTH)
    table = np.array(id_table(VOCABULARY, HF_SPECIAL_IDS))
    lowercase = tokenizer_config["do_lower_case"]
    assert (tokenizer.lowercase, tokenizer.strip_accents, tokenizer.pretokenizer) == (lowercase, lowercase, "bert")
    np.testing.assert_array_equal(
        table[tokenizer(ACCENT_FREE).numpy()], _hub_ids(tmp_path, ACCENT_FREE)["token_ids"].numpy()
    )
    # Accents: mmzoo follows Hugging Face (do_lower_case strips them when strip_accents is unset);
    # keras-hub's converter keeps them (strip_accents=False).
    accented = ["Café naïve"]
    got = table[tokenizer(accented).numpy()][0, :4].tolist()
    hub = _hub_ids(tmp_path, accented)["token_ids"].numpy()[0, :4].tolist()
    index = {token: i for i, token in enumerate(VOCABULARY)}
    if lowercase:
        assert got == [5, index["cafe"], index["naive"], 6]
        assert hub == [5, index["café"], index["[UNK]"], 6]
    else:
        assert got == hub == [5, index["Café"], index["[UNK]"], 6]


def test_hf_directory_explicit_strip_accents_false(tmp_path):
    _save_hf_dir(tmp_path, {"do_lower_case": True, "strip_accents": False})
    tokenizer = keras_hub_tokenizer(str(tmp_path), sequence_length=LENGTH)
    assert (tokenizer.lowercase, tokenizer.strip_accents) == (True, False)
    table = np.array(id_table(VOCABULARY, HF_SPECIAL_IDS))
    np.testing.assert_array_equal(table[tokenizer(TEXTS).numpy()], _hub_ids(tmp_path, TEXTS)["token_ids"].numpy())


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_hf_directory_tower_uses_the_checkpoint(tmp_path, prefix):
    tensors = _save_hf_dir(tmp_path, {"do_lower_case": True}, prefix=prefix, tokenizer_json=True)
    path = str(tmp_path)
    tokenizer = keras_hub_tokenizer(path, sequence_length=LENGTH)
    tower = build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=path, pooling="pooler")
    inner = tower.get_layer("bert_backbone")
    # The weights are the file's (HF [out, in] kernels transposed by keras-hub's converter).
    np.testing.assert_array_equal(
        np.asarray(inner.get_layer("token_embedding").embeddings), tensors[f"{prefix}embeddings.word_embeddings.weight"]
    )
    np.testing.assert_array_equal(
        np.asarray(inner.get_layer("pooled_dense").kernel), tensors[f"{prefix}pooler.dense.weight"].T
    )
    backbone = keras_hub.models.BertBackbone.from_preset(path)
    inputs = {k: np.asarray(v) for k, v in _hub_ids(tmp_path, ACCENT_FREE).items()}
    reference = backbone(inputs)
    out = tower(tokenizer(ACCENT_FREE))
    np.testing.assert_allclose(out["tokens"], reference["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(out["pooled"], reference["pooled_output"], atol=1e-5)
    np.testing.assert_array_equal(out["mask"], inputs["padding_mask"])


def test_hf_directory_zoo_model_builds_and_predicts(tmp_path):
    _save_hf_dir(tmp_path, {"do_lower_case": True}, tokenizer_json=True)
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16),
                        text_tower="keras_hub", text_tower_kwargs={"preset": str(tmp_path)})
    assert model.tokenizer.get_config()["vocabulary"] == keras_hub_tokenizer(str(tmp_path)).get_config()["vocabulary"]
    inputs = model.preprocess(np.zeros((3, 16, 16, 3), "float32"), ["The quick fox.", "café", ""])
    scores = np.asarray(model.predict(inputs, verbose=0)["scores"])
    assert scores.shape == (3, 2) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)


def test_hf_directory_tokenizer_config_defaults(tmp_path):
    # Hugging Face's BertTokenizer lower-cases when do_lower_case is absent; older transformers save
    # special tokens as AddedToken dicts.
    _save_hf_dir(tmp_path, {"cls_token": {"__type": "AddedToken", "content": "[CLS]", "lstrip": False}})
    tokenizer = keras_hub_tokenizer(str(tmp_path), sequence_length=LENGTH)
    assert (tokenizer.lowercase, tokenizer.strip_accents) == (True, True)
    tower = build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=str(tmp_path))
    assert tower.get_layer("backbone_inputs").table[:4] == [0, 4, 5, 6]
    assert max_sequence_length(str(tmp_path)) == HF_DIMS["positions"]  # config.json's max_position_embeddings


def test_a_keras_hub_without_the_preset_reader_is_named(monkeypatch):
    """The preset readers use keras-hub's private preset_utils; a release that moved it gets a message
    naming the tested release and the extra, not a ModuleNotFoundError from inside a tower."""
    import sys

    from mmzoo.towers.keras_hub_tuning import TESTED_KERAS_HUB, preset_files

    assert preset_files().check_file_exists  # the installed (tested) keras-hub has it
    assert keras_hub.__version__.startswith(TESTED_KERAS_HUB + ".")
    monkeypatch.delattr(sys.modules["keras_hub.src.utils"], "preset_utils")
    monkeypatch.setitem(sys.modules, "keras_hub.src.utils.preset_utils", None)  # `import` refuses it
    with pytest.raises(ImportError, match=r"keras_hub\.src\.utils\.preset_utils.*tested with keras-hub 0\.32.*mmzoo\[hub\]"):
        preset_files()
