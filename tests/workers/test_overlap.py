"""N-gram overlap against benchmark prompts (workers/hygiene/overlap.py): what counts as shared, the
spans a reviewer sees highlighted, and agreement with the naive scan it replaces."""

import random

import pytest

from workers.hygiene.overlap import OverlapIndex, naive_overlaps

# 30 distinct words, so every n-gram of it occurs once.
BENCH = ("Natalia sold clips to forty eight of her friends in April and then she sold half as many "
         "clips in May how many clips did Natalia sell altogether across both months of spring please")
BENCH_WORDS = BENCH.split()
FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def only(index, text, min_shared=1):
    found = list(index.scan([text], min_shared=min_shared))
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize("n", [8, 10, 13])
@pytest.mark.parametrize("run", [7, 8, 10, 13, 20])
def test_a_run_of_k_shared_words_is_k_minus_n_plus_1_ngrams_and_only_from_n_words(n, run):
    index = OverlapIndex([BENCH], n)
    shared = " ".join(BENCH_WORDS[3:3 + run])
    text = " ".join(FILLER[:6]) + " " + shared + " " + " ".join(FILLER[6:])
    found = only(index, text)
    if run < n:
        assert found is None
        return
    assert found.shared == run - n + 1
    assert [text[s:e] for s, e in found.text_spans] == [shared]
    assert [BENCH[s:e] for s, e in found.prompt_spans] == [shared]


def test_case_punctuation_and_spacing_do_not_matter_and_spans_cover_the_stored_text():
    index = OverlapIndex([BENCH], 10)
    text = ("Homework: NATALIA sold clips -- to forty-eight of her FRIENDS in April; and then she sold "
            "HALF as many clips!! That's all.")
    found = only(index, text)
    # "forty-eight" is two words, as "forty eight" is: the run covers "Natalia" … "clips".
    assert [text[s:e] for s, e in found.text_spans] == [
        "NATALIA sold clips -- to forty-eight of her FRIENDS in April; and then she sold HALF as many clips"]
    assert [BENCH[s:e] for s, e in found.prompt_spans] == [
        "Natalia sold clips to forty eight of her friends in April and then she sold half as many clips"]
    assert found.shared == 19 - 10 + 1


def test_non_ascii_text_is_compared_after_nfkc_and_casefold_and_offsets_stay_in_the_original():
    bench = "Ｔｈｅ CAFÉ serves crème brûlée ΣΟΦΊΑ and Straße every morning before the Москва train leaves"
    index = OverlapIndex([bench], 8)
    prefix = "🙂🙂 ünïcode prefix — "
    text = prefix + "the café SERVES Crème Brûlée σοφία and strasse every morning before the МОСКВА train"
    found = only(index, text)
    assert found is not None
    # Straße casefolds to "strasse", so the run from "the" to "train" is 14 words: 7 8-grams.
    assert found.shared == 14 - 8 + 1
    [(start, end)] = found.text_spans
    assert start == len(prefix)
    assert text[start:end] == "the café SERVES Crème Brûlée σοφία and strasse every morning before the МОСКВА train"
    [(start, end)] = found.prompt_spans
    assert bench[start:end] == "Ｔｈｅ CAFÉ serves crème brûlée ΣΟΦΊΑ and Straße every morning before the Москва train"


def test_two_separate_overlaps_are_two_spans_and_windows_that_touch_are_merged():
    index = OverlapIndex([BENCH], 8)
    first, second = " ".join(BENCH_WORDS[0:9]), " ".join(BENCH_WORDS[18:30])
    text = f"{first} {' '.join(FILLER)} {second}"
    found = only(index, text)
    assert [text[s:e] for s, e in found.text_spans] == [first, second]
    assert [BENCH[s:e] for s, e in found.prompt_spans] == [first, second]
    assert found.shared == (9 - 8 + 1) + (12 - 8 + 1)


def test_no_ngram_spans_two_texts_of_a_batch():
    index = OverlapIndex([BENCH], 8)
    head, tail = " ".join(BENCH_WORDS[:5]), " ".join(BENCH_WORDS[5:12])
    assert list(index.scan([head, tail, "unrelated words only"])) == []


def test_min_shared_and_every_prompt_of_every_text_in_order():
    other = "a completely different benchmark question about the speed of light in a vacuum measured in metres"
    index = OverlapIndex([BENCH, other], 8)
    texts = ["nothing to see", " ".join(BENCH_WORDS[:9]), f"{other} and also {' '.join(BENCH_WORDS[:12])}"]
    found = [(o.text, o.prompt, o.shared) for o in index.scan(texts, batch=2)]
    assert found == [(1, 0, 2), (2, 0, 5), (2, 1, 16 - 8 + 1)]
    assert [(o.text, o.prompt) for o in index.scan(texts, min_shared=5)] == [(2, 0), (2, 1)]


def test_empty_inputs():
    assert list(OverlapIndex([], 10).scan(["some text " * 20])) == []
    index = OverlapIndex(["too short"], 10)
    assert index.ngram_count == 0
    assert list(index.scan(["too short to match anything at all in ten words"])) == []
    assert list(OverlapIndex([BENCH], 10).scan([])) == []
    assert list(OverlapIndex([BENCH], 10).scan(["", "   ", "!!!"])) == []
    with pytest.raises(ValueError, match="at least 1"):
        OverlapIndex([BENCH], 0)


@pytest.mark.parametrize("n", [8, 13])
def test_the_index_finds_exactly_what_the_naive_scan_finds(n):
    rng = random.Random(n)
    vocabulary = [f"w{i}" for i in range(300)] + ["Über", "naïve", "ÉTÉ", "東京"]
    prompts = [" ".join(rng.choices(vocabulary, k=rng.randint(10, 40))) for _ in range(60)]
    texts = []
    for i in range(400):
        words = rng.choices(vocabulary, k=rng.randint(20, 120))
        if i % 7 == 0:  # plant an excerpt, re-cased
            source = rng.choice(prompts).split()
            start = rng.randint(0, max(0, len(source) - n))
            words[10:10] = [w.upper() for w in source[start:start + rng.randint(n - 2, n + 8)]]
        texts.append(", ".join(words))
    fast = sorted((o.text, o.prompt, o.shared) for o in OverlapIndex(prompts, n).scan(texts, batch=64))
    assert fast == sorted(naive_overlaps(texts, prompts, n))
    assert len(fast) > 20  # the planted excerpts were found
