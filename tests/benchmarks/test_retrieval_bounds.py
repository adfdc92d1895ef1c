"""benchmarks/retrieval.py: the strict protocol's oracle ceiling and its Bayes-optimal bound, on hand-built scenes; its image-tower flag."""


import pytest

from benchmarks import retrieval
from mmzoo.data import Record


def _scene(relation):
    """A small red circle and a large blue square, the square right of or below the circle."""
    square = {"x": 24.0, "y": 8.0} if relation == "left of" else {"x": 8.0, "y": 24.0}
    return [
        {"shape": "circle", "color": "red", "size": "small", "x": 8.0, "y": 8.0},
        {"shape": "square", "color": "blue", "size": "large", **square},
    ]


def _record(name, objects, captions):
    return Record(image=f"{name}.png", text=captions[0], label=None, captions=list(captions), meta={"objects": objects})


GENERIC = "a red circle and a blue square"  # true of both scenes
ABOVE = "a red circle above a blue square"  # true of the second scene only


def _held_out():
    return [_record("left", _scene("left of"), [GENERIC]), _record("above", _scene("above"), [ABOVE])]


def test_the_oracle_ranks_the_caption_true_of_fewer_held_out_images_first():
    # "above" sees both captions as true; ABOVE is true of one held-out image, GENERIC of two.
    assert retrieval.protocol_ceiling(_held_out(), 32) == 1.0


def test_bayes_bound_prefers_the_caption_rare_in_the_population():
    held_out = _held_out()
    # In a population of left-of scenes GENERIC is common and ABOVE never drawn:
    # the "above" image's own ABOVE is the better bet; "left" has one true caption.
    left_bank = [_record(f"b{i}", _scene("left of"), [GENERIC]) for i in range(5)]
    assert retrieval.bayes_bound(held_out, left_bank, 32) == 1.0
    # In a population of above scenes both are drawn equally often (1 in 20
    # draws each): a tie for "above", counted as an expected value.
    above_bank = [_record(f"b{i}", _scene("above"), [ABOVE]) for i in range(5)]
    assert retrieval.bayes_bound(held_out, above_bank, 32) == 0.75


def test_a_single_held_out_image_always_finds_its_caption():
    (record,) = _held_out()[:1]
    assert retrieval.bayes_bound([record], [record], 32) == 1.0


def test_bayes_bound_refuses_a_bank_without_scenes_like_the_held_out_ones():
    one_object = [{"shape": "circle", "color": "red", "size": "small", "x": 8.0, "y": 8.0}]
    with pytest.raises(ValueError, match=r"bank scenes with \[2\] objects"):
        retrieval.bayes_bound(_held_out(), [_record("b", one_object, ["a red circle"])], 32)


@pytest.mark.parametrize("flag, units", [("none", ()), ("24", (24,)), ("16,8", (16, 8))])
def test_image_hidden_units_flag_sets_the_cnn_head_of_the_preset(flag, units):
    import mmzoo

    args = retrieval.parse_args(["--quick", "--image-hidden-units", flag])
    override = retrieval.tower_overrides(args)
    model = mmzoo.build("dual_encoder", preset=args.preset, **override)
    hidden = [layer.units for layer in model.get_layer("image_tower").layers if layer.name.startswith("pooled_hidden")]
    assert hidden == list(units)
    # Everything else is the preset's CNN (tiny: filters (8, 16), dim 16).
    assert tuple(model.image_tower_kwargs["filters"]) == (8, 16) and model.image_tower_kwargs["dim"] == 16


def test_without_the_flag_the_preset_decides():
    assert retrieval.tower_overrides(retrieval.parse_args(["--quick"])) == {}


def test_tower_flags_change_only_what_they_name_and_reach_both_models():
    import mmzoo

    args = retrieval.parse_args(["--quick", "--image-filters", "4,12", "--image-coord-channels", "on",
                                 "--text-dim", "24", "--text-layers", "3"])
    override = retrieval.tower_overrides(args)
    dual = mmzoo.build("dual_encoder", preset=args.preset, **override)
    itm = mmzoo.build("itm_matcher", preset=args.preset, **override)
    for model in (dual, itm):
        image = model.get_layer("image_tower")
        convs = [layer.filters for layer in image.layers if layer.name.endswith("_conv")]
        assert convs == [4, 12]
        assert image.get_layer("block1_conv").kernel.shape[2] == 3 + 2  # x and y channels
        text = model.get_layer("text_tower")
        blocks = [layer for layer in text.layers if layer.name.startswith("encoder_block_")]
        assert len(blocks) == 3
        assert text.get_layer("final_norm").output.shape[-1] == 24
        # The rest of each tower is the tiny preset's.
        assert model.image_tower_kwargs["dim"] == 16 and model.text_tower_kwargs["num_heads"] == 2
    itm.init_towers_from(dual)  # towers built alike
    # --embedding-dim is the dual encoder's alone.
    args = retrieval.parse_args(["--quick", "--embedding-dim", "24"])
    assert retrieval.tower_overrides(args) == {} and args.embedding_dim == 24


def test_held_out_curve_puts_back_the_best_validation_epoch(tmp_path):
    import keras
    import numpy as np

    import mmzoo
    from mmzoo.data import read_manifest
    from mmzoo.datasets.shapes import generate_shapes_dataset
    from mmzoo.evaluation.retrieval import evaluate_matcher

    records = read_manifest(generate_shapes_dataset(str(tmp_path), num_images=8, image_size=32, seed=3))
    for seed in range(20):  # an untrained model that retrieves at least one caption (pessimistic ties)
        model = mmzoo.build("dual_encoder", preset="tiny", seed=seed)
        first = evaluate_matcher(model, records, batch_size=8)["image_to_text_recall@1"]
        if first > 0:
            break
    assert first > 0
    curve = retrieval.HeldOutCurve(records, records, retrieval.calibration_pixels(records, model), every=1,
                                   select=True)
    curve.set_model(model)
    curve.on_epoch_end(0, {"loss": 1.0})
    kept = [w.copy() for w in model.get_weights()]
    # "Epoch 2": an image tower that embeds every image alike scores every caption alike: R@1 0.
    for w in model.image_encoder.weights:
        w.assign(keras.ops.zeros_like(w))
    curve.on_epoch_end(1, {"loss": 0.5})
    assert [point[3] for point in curve.points] == [first, 0.0]
    curve.on_train_end()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), kept))
    assert evaluate_matcher(model, records, batch_size=8)["image_to_text_recall@1"] == first

    # select=False (--checkpoint last) keeps the last weights.
    last = retrieval.HeldOutCurve(records, records, retrieval.calibration_pixels(records, model), every=1)
    last.set_model(model)
    for w in model.image_encoder.weights:
        w.assign(keras.ops.zeros_like(w))
    last.on_epoch_end(0, {"loss": 1.0})
    last.on_train_end()
    assert evaluate_matcher(model, records, batch_size=8)["image_to_text_recall@1"] == 0.0


def test_held_out_curve_lets_an_unevaluated_last_epoch_compete(tmp_path):
    import mmzoo
    from mmzoo.data import read_manifest
    from mmzoo.datasets.shapes import generate_shapes_dataset

    records = read_manifest(generate_shapes_dataset(str(tmp_path), num_images=4, image_size=32, seed=3))
    model = mmzoo.build("dual_encoder", preset="tiny")
    curve = retrieval.HeldOutCurve(records, records, retrieval.calibration_pixels(records, model), every=2,
                                   select=True)
    curve.set_model(model)
    for epoch in range(3):  # evaluated after epoch 2 only
        curve.on_epoch_end(epoch, {"loss": 1.0})
    assert [point[0] for point in curve.points] == [2]
    curve.on_train_end()
    # Epoch 3 was evaluated at the end; with an unchanged model it ties epoch 2, and ties go to the later one.
    assert [point[0] for point in curve.points] == [2, 3] and curve.best[1] == 3
