"""Random caption corpora for the metric tests that compare with pycocoevalcap."""

import random

WORDS = "a an the red blue green circle square triangle small big left of right above below".split()


def random_corpus(seed, num_images, words_per_sentence, references_per_image):
    """``(refs, hyps)``: for each image, a random number of reference sentences
    (``references_per_image`` is the inclusive ``(min, max)``, likewise
    ``words_per_sentence``) and one hypothesis, copied from one of its
    references 40% of the time so that the higher n-gram orders have matches."""
    rng = random.Random(seed)

    def sentence():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words_per_sentence)))

    refs = [[sentence() for _ in range(rng.randint(*references_per_image))] for _ in range(num_images)]
    hyps = [rng.choice(r) if rng.random() < 0.4 else sentence() for r in refs]
    return refs, hyps
