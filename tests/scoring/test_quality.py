import json
import random

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from scoring.config import QualityConfig
from scoring.quality import QualityModel, expected_calibration_error, uncertainty

# Documentation-style sentences; the first 32 train, the last 16 are held out.
SENTENCES = [
    "The scheduler starts a new round every night and writes a summary to the catalog.",
    "Each candidate is scored by the current model and by a smaller reference model.",
    "If the server is not reachable, the tasks are written to a local queue instead.",
    "You can change the budget in the configuration file without restarting the service.",
    "The report shows how many examples were accepted, rejected or sent to experts.",
    "When a shard fails, the error is recorded and the rest of the round continues.",
    "Annotators see the text together with the model's guess and a short explanation.",
    "A checkpoint is saved after every epoch so that training can resume after a crash.",
    "The command prints a table with one row for each source that has been ingested.",
    "Most users start with the default settings and adjust them after the first round.",
    "The validation set is never used for training and is kept in a separate folder.",
    "Before you upgrade, make a backup of the workspace and read the release notes.",
    "Duplicates are removed before scoring, which saves time on large collections.",
    "The dashboard is updated when the round finishes and can be shared with the team.",
    "Every decision is stored with its reason, so that it can be explained later on.",
    "The tokenizer works on raw bytes, which means that no vocabulary has to be built.",
    "To add a new source, point the ingest command at a folder of JSON Lines files.",
    "The quality classifier is retrained whenever new expert labels have been pulled.",
    "Long documents are split into chunks of equal size before they are packed.",
    "A warning is shown if the disk is almost full or the memory limit is reached.",
    "The first section of this guide explains how to install the tool on a laptop.",
    "Our team reviews the most uncertain examples at the start of every week.",
    "The model becomes better with each round, and so the bar rises over time.",
    "You should keep the original files, because the catalog only stores references.",
    "The experts may correct a text, and the corrected version is used for training.",
    "The logs are written to a file in the workspace and rotated once they grow large.",
    "A round can be stopped at any time and resumed later from the same point.",
    "The examples in this chapter use a small model that runs on an ordinary computer.",
    "Please check that the time zone of the server matches the one in the schedule.",
    "The label interface shows two buttons and an optional field for a comment.",
    "The results of the last three rounds are compared in the report at the end.",
    "It is possible to run the scoring step on several machines at the same time.",
    "The reference model is trained once on trusted text and is not updated later.",
    "When the queue is empty, the annotators receive a message and can log out.",
    "The default margin is small, so that only a few examples are sent to experts.",
    "Texts that are too short or full of symbols are rejected by simple rules first.",
    "The command line tool has a help page for every command and every option.",
    "A new model is only registered if its validation loss is lower than before.",
    "The workspace contains the catalog, the models and the files for the experts.",
    "Most of the time is spent on scoring, which is why it runs in parallel batches.",
    "Some sources contain many copies of the same page, and these are merged early.",
    "The agreement between two annotators is measured before their labels are used.",
    "Users who prefer a graphical view can open the catalog in any SQL client.",
    "The training loop prints the loss every hundred steps and at the end of an epoch.",
    "If you change the tokenizer, all models have to be trained again from scratch.",
    "The second part of the guide describes how to move from a laptop to a cluster.",
    "A small sample of the accepted data is checked by hand at the end of each month.",
    "The schedule can be paused during holidays and started again with one command.",
]
TRAIN, HELD_OUT = SENTENCES[:32], SENTENCES[32:]


def docs(sentences, n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.sample(sentences, 3)) for _ in range(n)]


def shuffled(texts, seed):
    rng = random.Random(seed)
    out = []
    for t in texts:
        words = t.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def random_chars(n, seed):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))
            for _ in range(rng.randint(30, 45))
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def data():
    pos = docs(TRAIN, 300, seed=1)
    neg = shuffled(docs(TRAIN, 270, seed=2), seed=3) + random_chars(30, seed=4)
    test_pos = docs(HELD_OUT, 60, seed=5)
    test_neg = shuffled(docs(HELD_OUT, 45, seed=6), seed=7) + random_chars(15, seed=8)
    return pos, neg, test_pos, test_neg


@pytest.fixture(scope="module")
def fitted(data):
    pos, neg, _, _ = data
    return QualityModel(QualityConfig()).fit(pos, neg)


def test_separates_prose_from_shuffled_and_random_text_on_held_out_data(data, fitted):
    _, _, test_pos, test_neg = data
    assert fitted.calibrated
    p_pos, p_neg = fitted.predict(test_pos), fitted.predict(test_neg)
    y = np.r_[np.ones(len(p_pos)), np.zeros(len(p_neg))]
    assert roc_auc_score(y, np.r_[p_pos, p_neg]) > 0.9
    # word-shuffled prose alone, the harder negative
    k = len(test_neg) - 15
    y = np.r_[np.ones(len(p_pos)), np.zeros(k)]
    assert roc_auc_score(y, np.r_[p_pos, p_neg[:k]]) > 0.9
    assert p_pos.min() >= 0.0 and p_neg.max() <= 1.0


def test_out_of_fold_scores_are_honest_and_model_is_fitted(data):
    pos, neg, test_pos, test_neg = data
    pos, neg = pos[:150], neg[:120] + neg[-30:]
    model = QualityModel(QualityConfig(calibrate=False, cv_folds=3))
    oof_pos, oof_neg = model.fit_predict_oof(pos, neg)
    assert oof_pos.shape == (len(pos),) and oof_neg.shape == (len(neg),)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert roc_auc_score(y, np.r_[oof_pos, oof_neg]) > 0.9
    # Out-of-fold scores are less extreme than in-sample ones on the same texts.
    in_sample_pos = model.predict(pos)
    assert np.mean(in_sample_pos) > np.mean(oof_pos)
    assert model.n_positive == len(pos) and model.n_negative == len(neg)
    assert (
        roc_auc_score(
            np.r_[np.ones(len(test_pos)), np.zeros(len(test_neg))],
            np.r_[model.predict(test_pos), model.predict(test_neg)],
        )
        > 0.85
    )


def test_oof_is_deterministic_for_a_seed(data):
    pos, neg, _, _ = data
    cfg = QualityConfig(calibrate=False, cv_folds=3)
    a = QualityModel(cfg).fit_predict_oof(pos[:30], neg[:30])
    b = QualityModel(cfg).fit_predict_oof(pos[:30], neg[:30])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_save_load_round_trip(tmp_path, data, fitted):
    _, _, test_pos, test_neg = data
    path = fitted.save(tmp_path / "quality.joblib")
    meta = json.loads((tmp_path / "quality.joblib.json").read_text())
    assert meta["n_positive"] == 300 and meta["n_negative"] == 300
    assert meta["config"] == QualityConfig().to_dict()
    assert meta["calibrated"] is True
    loaded = QualityModel.load(path)
    assert loaded.cfg == fitted.cfg and loaded.calibrated
    texts = test_pos + test_neg
    np.testing.assert_array_equal(loaded.predict(texts), fitted.predict(texts))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.joblib", "quality.joblib.json"]


def test_load_missing_sidecar_is_a_clear_error(tmp_path, fitted):
    path = fitted.save(tmp_path / "q.joblib")
    (tmp_path / "q.joblib.json").unlink()
    with pytest.raises(FileNotFoundError, match="q.joblib.json"):
        QualityModel.load(path)


def test_small_data_skips_calibration_and_accepts_arrow_input():
    pos = pa.array(docs(TRAIN, 6, seed=9))
    neg = pa.chunked_array([pa.array(random_chars(6, seed=10))])
    model = QualityModel(QualityConfig()).fit(pos, neg)
    assert not model.calibrated
    p = model.predict(pa.array(docs(HELD_OUT, 3, seed=11) + random_chars(3, seed=12)))
    assert p.shape == (6,) and p[:3].min() > p[3:].max()
    assert model.predict([]).shape == (0,)


@pytest.mark.parametrize(("n_pos", "n_neg", "side"), [(0, 5, "positive"), (5, 1, "negative")])
def test_too_few_examples_is_a_clear_error(n_pos, n_neg, side):
    with pytest.raises(ValueError, match=f"{side}_texts needs at least 2"):
        QualityModel().fit(docs(TRAIN, n_pos, 0), random_chars(n_neg, 0))
    with pytest.raises(ValueError, match=f"{side}_texts needs at least 2"):
        QualityModel().fit_predict_oof(docs(TRAIN, n_pos, 0), random_chars(n_neg, 0))


def test_predict_before_fit_is_a_clear_error():
    with pytest.raises(ValueError, match="not fitted"):
        QualityModel().predict(["some text"])


def test_uncertainty():
    np.testing.assert_allclose(uncertainty([0.0, 0.25, 0.5, 0.75, 1.0]), [0, 0.5, 1, 0.5, 0])


def test_config_validation_and_round_trip():
    cfg = QualityConfig(char_ngram_range=(2, 4), C=0.5)
    assert QualityConfig.from_dict(cfg.to_dict()) == cfg
    assert QualityConfig.from_dict({"word_ngram_range": [1, 3]}).word_ngram_range == (1, 3)
    with pytest.raises(ValueError, match="char_ngram_range"):
        QualityConfig(char_ngram_range=(5, 3))
    with pytest.raises(ValueError, match="QualityConfig.C"):
        QualityConfig(C=0)
    with pytest.raises(ValueError, match="cv_folds"):
        QualityConfig(cv_folds=1)
    with pytest.raises(ValueError, match="calibrate"):
        QualityConfig(calibrate="yes")
    with pytest.raises(ValueError, match="unknown key"):
        QualityConfig.from_dict({"n_feature": 16})


def test_model_signals_join_the_ngrams_and_persist(tmp_path):
    # identical text on both sides: only the signal (e.g. a reference-model loss) separates
    texts = docs(TRAIN, 120, seed=9)
    pos_sig, neg_sig = np.full(60, 1.5), np.full(60, 3.0)
    model = QualityModel(QualityConfig()).fit(texts[:60], texts[60:], pos_sig, neg_sig)
    low, high = (
        model.predict(texts[:10], np.full(10, 1.5)),
        model.predict(texts[:10], np.full(10, 3.0)),
    )
    assert (low > 0.8).all() and (high < 0.2).all()
    with pytest.raises(ValueError, match="pass signals"):
        model.predict(texts[:2])
    with pytest.raises(ValueError, match="shape"):
        model.predict(texts[:2], np.ones(3))
    with pytest.raises(ValueError, match="both positives and negatives"):
        QualityModel().fit(texts[:60], texts[60:], pos_sig, None)
    loaded = QualityModel.load(model.save(tmp_path / "q.joblib"))
    np.testing.assert_array_equal(loaded.predict(texts[:10], np.full(10, 1.5)), low)
    with pytest.raises(ValueError, match="without model signals"):
        QualityModel().fit(texts[:60], texts[60:]).predict(texts[:2], np.ones(2))


def test_out_of_fold_uses_the_signals_too():
    texts = docs(TRAIN, 80, seed=10)
    model = QualityModel(QualityConfig(cv_folds=3))
    pos_oof, neg_oof = model.fit_predict_oof(
        texts[:40], texts[40:], np.full(40, 1.0), np.full(40, 4.0)
    )
    assert pos_oof.min() > neg_oof.max()
    assert model.signal_mean is not None


def imbalanced(seed):
    """Prose vs shuffled prose at 1:4, with some prose made ambiguous (partly shuffled)."""
    rng = random.Random(seed)
    pos = docs(TRAIN, 80, seed=seed)
    neg = shuffled(docs(TRAIN, 320, seed=seed + 1), seed=seed + 2)
    # half-shuffled positives make the classes overlap, so probabilities matter
    for i in range(0, 80, 2):
        words = pos[i].split()
        half = len(words) // 2
        tail = words[half:]
        rng.shuffle(tail)
        pos[i] = " ".join(words[:half] + tail)
    return pos, neg


def test_calibration_beats_the_raw_balanced_probabilities():
    pos, neg = imbalanced(seed=20)
    model = QualityModel(QualityConfig(n_features=2**14, C=1.0))
    pos_oof, neg_oof = model.fit_predict_oof(pos, neg)
    cal = model.calibration
    assert model.calibrated and cal["method"] == "sigmoid" and cal["n"] == 400
    assert cal["brier"] < cal["brier_raw"] and cal["ece"] < cal["ece_raw"]
    p = np.concatenate([pos_oof, neg_oof])
    y = np.r_[np.ones(80), np.zeros(320)]
    assert ((p >= 0) & (p <= 1)).all()
    assert np.mean((p - y) ** 2) == pytest.approx(cal["brier"])
    # held out: calibrated P(positive) is closer to the truth than the raw member output
    test_pos, test_neg = imbalanced(seed=40)
    x = test_pos + test_neg
    y_test = np.r_[np.ones(80), np.zeros(320)]
    p_cal = model.predict(x)
    feats = model.features(x)
    p_raw = np.mean([m.predict_proba(feats)[:, 1] for m in model._estimator["members"]], axis=0)
    assert np.mean((p_cal - y_test) ** 2) < np.mean((p_raw - y_test) ** 2)
    assert expected_calibration_error(p_cal, y_test) < expected_calibration_error(p_raw, y_test)


def test_isotonic_calibration_and_report_persist(tmp_path):
    pos, neg = imbalanced(seed=21)
    model = QualityModel(QualityConfig(n_features=2**12, calibration_method="isotonic"))
    model.fit(pos, neg)
    assert model.calibration["method"] == "isotonic"
    loaded = QualityModel.load(model.save(tmp_path / "q.joblib"))
    assert loaded.calibration == model.calibration
    meta = json.loads((tmp_path / "q.joblib.json").read_text())
    assert meta["calibration"]["brier"] == model.calibration["brier"]
    with pytest.raises(ValueError, match="calibration_method"):
        QualityConfig(calibration_method="beta")


def test_ensemble_spread_is_larger_where_the_data_is_ambiguous(data, fitted):
    _, _, test_pos, test_neg = data
    clear = test_pos[:20] + random_chars(20, seed=30)
    # half prose, half shuffled: between the classes the members disagree more
    ambiguous = [
        a[: len(a) // 2] + " " + b[len(b) // 2 :]
        for a, b in zip(test_pos[20:60], test_neg[:40], strict=True)
    ]
    p_clear, sd_clear = fitted.predict_with_uncertainty(clear)
    p_amb, sd_amb = fitted.predict_with_uncertainty(ambiguous)
    assert sd_clear.shape == (40,) and (sd_clear >= 0).all()
    assert np.median(sd_amb) > np.median(sd_clear)
    np.testing.assert_allclose(p_clear, fitted.predict(clear))


def test_expected_calibration_error():
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == 0.0
    assert expected_calibration_error([0.9] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="1-D"):
        expected_calibration_error([0.5], [1, 0])
