import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from dedup_texts import edit, random_docs

from scoring.config import DedupConfig
from scoring.dedup import (
    band_keys,
    bucket_pairs,
    collision_probability,
    lsh_params,
    lsh_shape,
    minhash_signatures,
    near_duplicates,
    shingle_hashes,
    similarity,
)

SCHEMES = ["oph", "kperm"]


def jaccard(a: str, b: str, k: int = 5) -> float:
    h, counts = shingle_hashes([a, b], k)
    sa, sb = set(h[: counts[0]].tolist()), set(h[counts[0] :].tolist())
    return len(sa & sb) / len(sa | sb)


def test_lsh_params_fit_the_threshold():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        # the S-curve crosses 1/2 near the threshold
        assert collision_probability(threshold - 0.15, bands, rows) < 0.5
        assert collision_probability(threshold + 0.1, bands, rows) > 0.5
    # weighing misses more gives more bands (a flatter, earlier curve)
    b_even, _ = lsh_params(0.8, 128, recall_weight=0.5)
    b_recall, _ = lsh_params(0.8, 128, recall_weight=0.9)
    assert b_recall > b_even
    assert lsh_shape(DedupConfig(bands=4, rows=8)) == (4, 8)


def test_shingles_ignore_case_and_whitespace_runs():
    h, counts = shingle_hashes(["Hello  World\n\nagain", "hello world again", "hi"], 5)
    a, b = h[: counts[0]], h[counts[0] : counts[0] + counts[1]]
    assert counts.tolist() == [13, 13, 1]  # a text shorter than a shingle is one shingle
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_estimates_jaccard(scheme):
    cfg = DedupConfig(scheme=scheme, num_perm=256)
    base = random_docs(12, seed=1)
    pairs = [
        (t, edit(t, n, seed=i)) for i, (t, n) in enumerate(zip(base, range(0, 24, 2), strict=True))
    ]
    sig = minhash_signatures([x for pair in pairs for x in pair], cfg)
    for p, (a, b) in enumerate(pairs):
        exact = jaccard(a, b)
        est = similarity(sig[2 * p], sig[2 * p + 1])
        sd = np.sqrt(exact * (1 - exact) / cfg.num_perm) + 0.01
        assert abs(est - exact) < 4 * sd, (p, exact, est)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signatures_do_not_depend_on_the_batch(scheme):
    texts = random_docs(7, seed=2) + ["short", "", "é€𝄞 unicode too"]
    cfg = DedupConfig(scheme=scheme)
    whole = minhash_signatures(texts, cfg)
    small = minhash_signatures(pa.array(texts), dataclasses.replace(cfg, batch_docs=3))
    single = np.stack([minhash_signatures([t], cfg)[0] for t in texts])
    assert np.array_equal(whole, small) and np.array_equal(whole, single)
    assert whole.dtype == np.uint32 and whole.shape == (len(texts), cfg.num_perm)
    assert (whole != 0xFFFFFFFF).all()  # every bin densified, even for a 1-shingle text
    other_seed = minhash_signatures(texts, dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(whole, other_seed)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_planted_pairs_are_found_and_threshold_respected(scheme):
    cfg = DedupConfig(scheme=scheme)  # threshold 0.8
    base = random_docs(300, seed=3)
    near = [edit(base[i], 2, seed=i) for i in range(0, 60)]  # J ~ 0.9
    far = [edit(base[i], 14, seed=i) for i in range(60, 100)]  # J ~ 0.5-0.6
    texts = base + near + far
    assert min(jaccard(base[i], near[i]) for i in range(60)) > 0.85
    assert max(jaccard(base[60 + i], far[i]) for i in range(40)) < 0.7
    out = near_duplicates(minhash_signatures(texts, cfg), cfg)
    dup = out.duplicate_of
    # every planted near copy points to its original (the earlier row); nothing else merged
    assert dup[300:360].tolist() == list(range(60))
    assert (dup[:300] == -1).all() and (dup[360:] == -1).all()
    assert out.n_duplicates == 60
    assert (out.similarity[300:360] >= cfg.threshold).all()


def test_verification_cuts_lsh_false_positives():
    # one band of 4 rows: pairs at similarity ~0.6 often collide, verification drops them
    cfg = DedupConfig(bands=16, rows=2, threshold=0.8)
    base = random_docs(40, seed=4)
    texts = base + [edit(t, 10, seed=i) for i, t in enumerate(base)]
    sig = minhash_signatures(texts, cfg)
    verified = near_duplicates(sig, cfg)
    unverified = near_duplicates(sig, dataclasses.replace(cfg, verify=False))
    assert verified.n_candidate_pairs > 0
    assert unverified.n_duplicates > 0
    assert verified.n_duplicates == 0


def test_representative_has_the_lowest_rank():
    cfg = DedupConfig()
    doc = random_docs(1, seed=5)[0]
    texts = [edit(doc, 1, seed=1), doc, edit(doc, 1, seed=2), random_docs(1, seed=6)[0]]
    sig = minhash_signatures(texts, cfg)
    # row 2 ranks first (e.g. a validation copy): the others in its cluster point to it
    out = near_duplicates(sig, cfg, rank=np.array([1, 2, 0, 3]))
    assert out.duplicate_of.tolist() == [2, 2, -1, -1]
    out = near_duplicates(sig, cfg)
    assert out.duplicate_of.tolist() == [-1, 0, 0, -1]


def test_bucket_pairs_all_pairs_small_star_large():
    members = np.array([5, 2, 9, 1, 3, *range(100, 140)])
    offsets = np.array([0, 3, 5, 45])
    i, j = bucket_pairs(members, offsets)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert {(2, 5), (2, 9), (5, 9), (1, 3)} <= pairs
    assert {(100, k) for k in range(101, 140)} <= pairs
    assert len(pairs) == 3 + 1 + 39  # the 40-member bucket is a star, not 780 pairs


def test_band_keys_shape_and_equality():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4]], dtype=np.uint32)
    keys = band_keys(sig, 2, 2)
    assert keys.shape == (3, 2) and keys.dtype == np.int64
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] == keys[2, 1]
    assert keys[0, 0] != keys[2, 0] and keys[0, 1] != keys[1, 1]
    assert keys[0, 0] != band_keys(sig[:, [2, 3, 0, 1]], 2, 2)[0, 1]  # bands are salted
    with pytest.raises(ValueError, match="bands \\* rows"):
        band_keys(sig, 3, 2)


def test_config_validation_and_round_trip():
    cfg = DedupConfig(threshold=0.7, num_perm=64)
    assert DedupConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="threshold"):
        DedupConfig(threshold=1.0)
    with pytest.raises(ValueError, match="bands"):
        DedupConfig(bands=4)
    with pytest.raises(ValueError, match="bands"):
        DedupConfig(bands=20, rows=8)
    with pytest.raises(ValueError, match="scheme"):
        DedupConfig(scheme="simhash")
    with pytest.raises(ValueError, match="unknown key"):
        DedupConfig.from_dict({"thresh": 0.5})
