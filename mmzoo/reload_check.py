"""Reload mmzoo exports the way TF Serving would and print their predictions.

Run as ``python -m mmzoo.reload_check REQUEST.json`` (``mmzoo demo``
does). It imports only ``tensorflow`` and ``tensorflow_text``: no Keras, no
mmzoo model code; it checks that on exit. REQUEST.json holds the export
directories, sample image paths, questions and candidate captions.
"""

from __future__ import annotations

import json
import sys


def _normalize(caption: str) -> str:
    """Lowercase, punctuation dropped, single spaces (as the captioning metrics compare)."""
    kept = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in str(caption).lower())
    return " ".join(kept.split())


def _same_caption(caption, references) -> bool:
    return _normalize(caption) in {_normalize(r) for r in references}


def _mark(right: bool) -> str:
    """✓ for a right prediction (the answer, or a caption equal to one of the image's own), ✗ for a wrong one."""
    return "✓" if right else "✗"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        req = json.load(f)

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)

    images = tf.constant([open(p, "rb").read() for p in req["images"]])
    classifier = tf.saved_model.load(req["classifier"]).signatures["serving_default"]
    matcher = tf.saved_model.load(req["matcher"])
    captioner = tf.saved_model.load(req["captioner"])

    cls = classifier(image_bytes=images, text=tf.constant(req["questions"]))
    cand = tf.constant(req["candidates"])
    img_emb = matcher.signatures["embed_image"](image_bytes=images)["embedding"]
    txt_emb = matcher.signatures["embed_text"](text=cand)["embedding"]
    best = tf.argmax(tf.matmul(img_emb, txt_emb, transpose_b=True), axis=1).numpy()
    greedy = captioner.signatures["serving_default"](image_bytes=images)
    beam = captioner.signatures["beam_search"](image_bytes=images)

    captions = req.get("captions") or [[r] for r in req["references"]]
    for i, path in enumerate(req["images"]):
        answer = cls["classes"][i].numpy().decode()
        match = req["candidates"][best[i]]
        greedy_caption = greedy["caption"][i].numpy().decode()
        beam_caption = beam["caption"][i].numpy().decode()
        print(f"  image {path}")
        print(f"    {_mark(answer == str(req['answers'][i]))} question   {req['questions'][i]!r} -> {answer} "
              f"(p={float(tf.reduce_max(cls['scores'][i])):.2f}; truth: {req['answers'][i]})")
        print(f"    {_mark(_same_caption(match, captions[i]))} best match {match!r} "
              f"(of {len(req['candidates'])} captions)")
        print(f"    {_mark(_same_caption(greedy_caption, captions[i]))} greedy     {greedy_caption!r}")
        print(f"    {_mark(_same_caption(beam_caption, captions[i]))} beam       {beam_caption!r}")
        print(f"      reference  {req['references'][i]!r}"
              + (f" (and {len(captions[i]) - 1} more)" if len(captions[i]) > 1 else ""))
    # Only mmzoo's own model code counts: TensorFlow may load its bundled
    # tf.keras shim (keras._tf_keras) lazily while restoring a SavedModel.
    allowed = {"mmzoo", "mmzoo.reload_check", "mmzoo.registry", "mmzoo.version"}
    leaked = sorted(m for m in sys.modules if m.startswith("mmzoo") and m not in allowed)
    if leaked:
        print(f"error: the reload process imported {leaked[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
