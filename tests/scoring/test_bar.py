"""The bar on a fixed scale rises with a better model; the refitted bar alone need not."""

import random

import numpy as np
import pytest

from scoring.bar import anchored_bar, model_level_bar
from scoring.config import QualityConfig
from scoring.quality import QualityModel

WORDS = [
    "the",
    "model",
    "writes",
    "a",
    "short",
    "text",
    "about",
    "the",
    "data",
    "and",
    "the",
    "round",
    "and",
    "every",
    "expert",
    "reads",
    "it",
    "before",
    "the",
    "next",
    "step",
    "begins",
    "so",
    "that",
    "the",
    "catalog",
    "keeps",
    "each",
    "decision",
    "with",
    "a",
    "reason",
]


def prose(n, seed):
    """Grammatical-looking sentences from a fixed template: the 'trusted' text."""
    rng = random.Random(seed)
    subjects = ["The model", "Each expert", "The catalog", "A new round", "The scheduler"]
    verbs = ["writes", "reads", "keeps", "checks", "sends"]
    objects = ["a short text", "every decision", "the hard cases", "the summary", "the data"]
    tails = ["before the next step.", "with a reason.", "every night.", "for the team."]
    return [
        " ".join(
            f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}"
            for _ in range(4)
        )
        for _ in range(n)
    ]


def word_salad(n, seed):
    """A better-than-random model: the right words, in no order."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(n)]


def gibberish(n, seed):
    """An untrained byte model: random letters."""
    rng = random.Random(seed)
    return [
        " ".join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)) for _ in range(30)
        )
        for _ in range(n)
    ]


def near_prose(n, seed):
    """A good model: prose with a few words swapped."""
    rng = random.Random(seed)
    out = []
    for text in prose(n, seed):
        words = text.split()
        for _ in range(2):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="module")
def anchor():
    # Round 0: trusted prose against the untrained model's samples (and some word salad
    # from rule rejects), then frozen.
    cfg = QualityConfig(n_features=2**12, cv_folds=3)
    return QualityModel(cfg).fit(prose(120, 1), gibberish(80, 2) + word_salad(40, 3))


def test_a_better_model_gets_a_higher_anchored_bar(anchor):
    bars = [
        anchored_bar(anchor, samples(100, seed=10), None, 0.9)[0]
        for samples in (gibberish, word_salad, near_prose)
    ]
    assert bars[0] < bars[1] < bars[2]
    assert bars[2] - bars[0] > 0.3  # visibly, not by a rounding error


def test_anchored_bar_is_the_quantile_of_the_anchor_quality(anchor):
    texts = word_salad(50, seed=11)
    bar, quality = anchored_bar(anchor, texts, None, 0.75)
    np.testing.assert_allclose(quality, anchor.predict(texts))
    assert bar == pytest.approx(model_level_bar(quality, 0.75))
    assert ((quality >= 0) & (quality <= 1)).all()


def test_anchor_needs_the_signals_it_was_fitted_with():
    anchor = QualityModel(QualityConfig(n_features=2**10, cv_folds=2)).fit(
        prose(30, 1), gibberish(30, 2), np.full(30, 1.0), np.full(30, 3.0)
    )
    with pytest.raises(ValueError, match="pass signals"):
        anchored_bar(anchor, prose(3, 4), None, 0.9)
    bar, _ = anchored_bar(anchor, prose(3, 4), np.full(3, 1.0), 0.9)
    assert bar > 0.5
