"""Exact and near-duplicate clusters (workers/hygiene/near_dup.py), on texts whose similarity is known."""

import random

import numpy as np
import pytest

from workers.hygiene import near_dup
from workers.hygiene.near_dup import Signer, cluster_texts, find_clusters, jaccard, shingles
from workers.hygiene.text import canonical

VOCABULARY = [f"word{i}" for i in range(3000)]


def random_text(rng: random.Random, n: int = 200) -> str:
    return " ".join(rng.choices(VOCABULARY, k=n))


def with_changes(text: str, every: int) -> str:
    """`text` with one word in `every` replaced: each replaced word breaks the 5 shingles covering it."""
    tokens = text.split()
    for i in range(every // 2, len(tokens), every):
        tokens[i] = f"changed{i}"
    return " ".join(tokens)


@pytest.fixture
def rng():
    return random.Random(7)


def test_case_spacing_and_punctuation_variants_are_one_exact_cluster():
    texts = ["What is 2+2? The answer is 4.", "what is 2+2 the answer is 4", "WHAT  is 2+2 ?\n\nThe answer is 4!",
             "“What is 2+2?” The answer is 4…", "What is 2-2? The answer is 0.", "Something else entirely."]
    clusters = cluster_texts(texts, method="exact")
    assert [(c.members, c.kind) for c in clusters] == [([0, 1, 2, 3], "exact")]
    assert clusters[0].representative == 0
    assert all(clusters[0].similarity[m] == 1.0 for m in clusters[0].members)
    assert canonical("2+2=4") != canonical("2-2=4")  # operators are part of the text


def test_a_pair_at_about_0_9_is_found_and_one_at_about_0_3_is_not(rng):
    base, other = random_text(rng), random_text(rng)
    close, far = with_changes(base, 100), with_changes(base, 10)
    assert 0.85 <= jaccard(shingles(base), shingles(close)) <= 0.95
    assert 0.2 <= jaccard(shingles(base), shingles(far)) <= 0.4
    clusters = cluster_texts([base, other, close, far], method="near", threshold=0.8)
    assert len(clusters) == 1
    (cluster,) = clusters
    assert (cluster.members, cluster.kind, cluster.representative) == ([0, 2], "near", 0)
    assert 0.8 <= cluster.similarity[2] < 1.0
    # The exact method does not join texts that differ in a word.
    assert cluster_texts([base, other, close, far], method="exact") == []


def test_threshold_decides_what_is_near(rng):
    base = random_text(rng)
    middling = with_changes(base, 20)  # about 0.6
    true = jaccard(shingles(base), shingles(middling))
    assert 0.5 < true < 0.7
    assert cluster_texts([base, middling], threshold=0.5)[0].members == [0, 1]
    assert cluster_texts([base, middling], threshold=0.8) == []


def test_exact_and_near_members_join_one_cluster_with_their_similarities(rng):
    base = random_text(rng)
    texts = [base, base.upper(), with_changes(base, 100), random_text(rng)]
    (cluster,) = cluster_texts(texts)
    assert cluster.members == [0, 1, 2] and cluster.kind == "near"
    assert cluster.similarity[1] == 1.0 and cluster.similarity[2] < 1.0


@pytest.mark.parametrize("prefer, expected", [("first", 0), ("shortest", 1), ("longest", 2)])
def test_the_representative_follows_the_rule(prefer, expected):
    texts = ["The sum is 4.", "the sum is 4", "The sum is 4 !!!", "unrelated"]
    (cluster,) = cluster_texts(texts, method="exact", prefer=prefer)
    assert cluster.representative == expected


def test_across_versions_the_earlier_text_is_the_representative_and_clusters_need_both_sides(rng):
    base, repeated_later, only_later = random_text(rng), random_text(rng), random_text(rng)
    earlier = [base, repeated_later, repeated_later + " "]  # a duplicate among earlier texts only
    later = [only_later, base.lower(), only_later.upper(), with_changes(base, 100)]
    clusters = cluster_texts(earlier + later, earlier=len(earlier), prefer="shortest")
    assert [(c.members, c.representative) for c in clusters] == [([0, 4, 6], 0)]


def test_empty_texts_and_no_texts():
    assert cluster_texts([]) == []
    (cluster,) = cluster_texts(["", "  ", "real text here"])  # empty texts are one (exact) form
    assert cluster.members == [0, 1] and cluster.kind == "exact"


def test_bad_parameters_are_refused():
    signer = Signer()
    signer.add(["a b c"])
    for kwargs in ({"method": "fuzzy"}, {"prefer": "random"}, {"threshold": 0}, {"threshold": 1.5}):
        with pytest.raises(ValueError):
            find_clusters(signer, **kwargs)


def test_signatures_do_not_depend_on_batching_or_the_process(rng):
    texts = [random_text(rng, n) for n in (1, 3, 5, 6, 40, 2000)]
    whole, batched = Signer(), Signer()
    whole.add(texts)
    for text in texts:
        batched.add([text])
    assert np.array_equal(whole.signatures, batched.signatures)
    # A text longer than one MinHash block gets the same signature as when signed alone.
    long_text = random_text(rng, near_dup.BLOCK_ROWS + 500)
    alone, among = Signer(), Signer()
    alone.add([long_text])
    among.add(texts + [long_text])
    assert np.array_equal(alone.signatures[0], among.signatures[-1])


def test_estimates_track_true_jaccard(rng):
    base = random_text(rng, 400)
    variants = [with_changes(base, every) for every in (8, 15, 30, 100)]
    signer = Signer()
    signer.add([base, *variants])
    sig = signer.signatures
    for i, variant in enumerate(variants, start=1):
        estimate = float((sig[0] == sig[i]).mean())
        assert abs(estimate - jaccard(shingles(base), shingles(variant))) < 0.12


def test_a_bucket_of_many_copies_gives_linear_candidates(rng):
    text = random_text(rng)
    signer = Signer()
    signer.add([text + f" tail{i}" for i in range(300)])  # near copies: one shingle differs
    pairs = near_dup.candidate_pairs(signer.signatures, np.arange(300), 0.8)
    assert len(pairs) < 300 * 5  # a star per bucket, not 300²/2 pairs
    (cluster,) = find_clusters(signer)
    assert len(cluster.members) == 300
