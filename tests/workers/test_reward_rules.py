"""Rule-based reward components and readability filters: format, language, filters, shaping.

Pure functions on a Sample: no database, no Django. Each table row says what it checks.
"""

import json
import math
import time

import pytest

from workers.rewards.base import Reward, Sample, Verdict
from workers.rewards.filters import (
    FILTERS,
    apply_filters,
    code_in_reasoning,
    long_paragraphs,
    mixed_language,
    repetition_loop,
    truncated,
)
from workers.rewards.format import format_reward, think_format
from workers.rewards.language import language_consistency
from workers.rewards.shaping import cosine_length, cosine_scale, repetition_penalty


def r1(think: str, answer: str = "4") -> str:
    """A completion in the R1-Zero template."""
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>"


# ---------------------------------------------------------------- format

FORMAT_CASES = [
    # (completion, partial_credit, value, reason or None)
    pytest.param(r1("2 + 2 = 4"), False, 1.0, None, id="well-formed"),
    pytest.param("\n  " + r1("x") + "\n\n", False, 1.0, None, id="whitespace around is fine"),
    pytest.param("<think></think><answer>4</answer>", False, 1.0, None, id="empty reasoning is allowed"),
    pytest.param("<think>x<answer>4</answer>", False, 0.0, "no closing </think>", id="unclosed think"),
    pytest.param("x</think><answer>4</answer>", False, 0.0, "no <think> tag", id="missing opening think"),
    pytest.param("<think>x</think>4", False, 0.0, "no <answer> tag", id="no answer block"),
    pytest.param("<think>x</think><answer>4", False, 0.0, "no closing </answer>", id="unclosed answer"),
    pytest.param(r1("x") + " So 4.", False, 0.0, "text after </answer>", id="text after the answer"),
    pytest.param("Sure! " + r1("x"), False, 0.0, "text before <think>", id="text before the think block"),
    pytest.param("<think>x</think> so <answer>4</answer>", False, 0.0, "text between </think> and <answer>",
                 id="text between the blocks"),
    pytest.param(r1("x") + "<answer>5</answer>", False, 0.0, "2 answer blocks", id="two answer blocks"),
    pytest.param("<think>a<think>b</think></think><answer>4</answer>", False, 0.0, "2 think blocks",
                 id="nested think"),
    pytest.param("<answer>4</answer><think>x</think>", False, 0.0, "<answer> before </think>",
                 id="blocks in the wrong order"),
    pytest.param("</think>x<think><answer>4</answer>", False, 0.0, "</think> before <think>",
                 id="think tags swapped"),
    pytest.param("<think>x</think><answer> \n </answer>", False, 0.0, "empty answer", id="blank answer"),
    pytest.param("plain text, no tags", False, 0.0, "no <think> tag", id="no tags at all"),
    # partial credit: 0.25 per tag present exactly once, never 1.0 unless well-formed
    pytest.param(r1("x"), True, 1.0, None, id="partial: well-formed still 1.0"),
    pytest.param("<think>x<answer>4</answer>", True, 0.75, "no closing </think>", id="partial: 3 of 4 tags"),
    pytest.param(r1("x") + " So 4.", True, 0.75, "text after </answer>", id="partial: capped at 0.75"),
    pytest.param(r1("x") + "<answer>5</answer>", True, 0.5, "2 answer blocks", id="partial: doubled tags earn 0"),
    pytest.param("<think> and nothing else", True, 0.25, "no closing </think>", id="partial: one tag"),
    pytest.param("no tags", True, 0.0, "no <think> tag", id="partial: no tag"),
]


@pytest.mark.parametrize("completion, partial, value, reason", FORMAT_CASES)
def test_format_reward(completion, partial, value, reason):
    result = format_reward(Sample(completion), partial_credit=partial)
    assert result.value == pytest.approx(value)
    assert result.details.get("reason") == reason
    assert set(result.details["tag_counts"]) == {"<think>", "</think>", "<answer>", "</answer>"}


# ---------------------------------------------------------------- language

LANGUAGE_CASES = [
    # (completion, target, share or (low, high), reason or None)
    pytest.param(r1("First we add the numbers, then we check the result."), "en", 1.0, None, id="English"),
    pytest.param(r1("首先我们把两个数相加，然后检查结果。"), "zh", 1.0, None, id="Chinese"),
    # 7 Han characters (首先计算和 + 然后) against 3 English words
    pytest.param(r1("首先计算和。然后 check the result."), "zh", 0.7, None, id="zh drifting into English"),
    # "The answer" (2 Latin words) against 是 (1 Han character)
    pytest.param(r1("The answer 是 4."), "en", 2 / 3, None, id="en with a Chinese word"),
    pytest.param(r1(r"设 $x = \frac{1}{2}$，则 x + 1 = 1.5，所以答案是 3/2。"), "zh", 1.0, None,
                 id="math, numbers and variables do not count"),
    pytest.param(r1(r"令 \frac{a}{b} 与 \sqrt{2} 相等，角 α 为 30 度。"), "zh", 1.0, None,
                 id="bare LaTeX commands and Greek variables do not count"),
    pytest.param(r1("我们调用 np.linalg.solve(A, b) 和 my_var 以及 camelCase 得到结果。"), "zh", 1.0, None,
                 id="code identifiers do not count"),
    pytest.param(r1("我们运行代码：\n```python\nprint(sum(range(10)))\n```\n得到 45。"), "zh", 1.0, None,
                 id="fenced code does not count"),
    pytest.param(r1("まず、二つの数の和を計算します。"), "ja", 1.0, None, id="Japanese: kana and kanji"),
    pytest.param(r1("まず和を計算します。"), "zh", (0.2, 0.6), None,
                 id="Japanese judged as Chinese: kana count against"),
    pytest.param(r1("먼저 두 수의 합을 계산합니다."), "ko", 1.0, None, id="Korean by script"),
    pytest.param(r1("Сначала вычислим сумму. Then check."), "ru", 0.6, None, id="Russian with English"),
    pytest.param(r1("أولا نحسب المجموع ثم نتحقق من النتيجة."), "ar", 1.0, None, id="Arabic by script"),
    pytest.param(r1("Zuerst berechnen wir die Summe der beiden Zahlen und prüfen dann das Ergebnis."), "de",
                 1.0, None, id="German through the detector"),
    pytest.param(r1("Zuerst berechnen wir die Summe der beiden Zahlen. Then we check whether the result "
                    "is even. Also ist das Ergebnis gleich drei."), "de", (0.4, 0.8), None,
                 id="German drifting into English"),
    pytest.param(r1("D'abord, calculons la somme des deux nombres puis vérifions si le résultat est pair."),
                 "fr", 1.0, None, id="French through the detector"),
    pytest.param(r1("Primero calculamos la suma de los dos números y luego comprobamos el resultado."),
                 "es", 1.0, None, id="Spanish through the detector"),
    pytest.param(r1("首先我们把两个数相加。"), "zh-CN", 1.0, None, id="language tags are normalised"),
    pytest.param("First we add the numbers.<answer>4</answer>", "en", 1.0, None,
                 id="no think tags: the text before <answer> is the reasoning"),
    pytest.param(r1("   "), "en", 0.0, "empty chain of thought", id="empty reasoning"),
    pytest.param(r1("1 + 2 = 3, $x^2$"), "en", 0.0,
                 "no words in the chain of thought (only numbers, math, code or symbols)", id="only math"),
    pytest.param(r1("hello there"), "xx", 0.0, "unsupported target language 'xx'", id="unknown target"),
]


@pytest.mark.parametrize("completion, target, share, reason", LANGUAGE_CASES)
def test_language_consistency(completion, target, share, reason):
    result = language_consistency(Sample(completion), target=target)
    if isinstance(share, tuple):
        assert share[0] <= result.value <= share[1], result.details
    else:
        assert result.value == pytest.approx(share), result.details
    assert result.details.get("reason") == reason
    if reason is None:
        assert result.details["share"] == pytest.approx(result.value, abs=1e-4)
        assert result.details["in_target"] <= result.details["words"] == sum(result.details["counts"].values())


def test_language_defaults_to_the_samples_language_and_reports_detected_languages():
    sample = Sample(r1("Zuerst berechnen wir die Summe der beiden Zahlen. Then we check whether the result is "
                       "even and correct."), language="de")
    result = language_consistency(sample)
    assert result.details["target"] == "de"
    assert set(result.details["latin_languages"]) == {"de", "en"}


# ---------------------------------------------------------------- filters

PARAGRAPH = "The sum of the two numbers is even, so we divide by two. "  # 57 characters

ZH_WITH_ENGLISH = r1("首先计算和。然后 check the result.")  # 7 Han characters, 3 English words

FILTER_CASES = [
    # (filter, params, sample, expected drop reason, or None to keep)
    pytest.param(mixed_language, {}, Sample(r1("First we add, then we check the sum.")), None,
                 id="mixed: English kept"),
    pytest.param(mixed_language, {}, Sample(ZH_WITH_ENGLISH, language="zh"),
                 "chain of thought is 70% zh (minimum 95%): 7 of 10 words", id="mixed: zh with English dropped"),
    pytest.param(mixed_language, {"min_consistency": 0.6}, Sample(ZH_WITH_ENGLISH, language="zh"), None,
                 id="mixed: a lower minimum keeps it"),
    pytest.param(mixed_language, {}, Sample(r1("$x = 3$")), None, id="mixed: nothing to judge is kept"),
    pytest.param(mixed_language, {}, Sample(r1("hello"), language="xx"), "unsupported target language 'xx'",
                 id="mixed: an unsupported target is dropped, not silently kept"),
    pytest.param(long_paragraphs, {}, Sample(r1(PARAGRAPH * 10 + "\n\n" + PARAGRAPH * 10)), None,
                 id="paragraphs: short ones kept"),
    pytest.param(long_paragraphs, {}, Sample(r1(PARAGRAPH * 60)),
                 "paragraph of 3,419 characters (limit 2,000)", id="paragraphs: 60 sentences in one dropped"),
    pytest.param(long_paragraphs, {"max_chars": 100}, Sample(r1("short\n \nparagraphs\n\n" + "x" * 101)),
                 "paragraph of 101 characters (limit 100)", id="paragraphs: blank lines with spaces split"),
    pytest.param(code_in_reasoning, {}, Sample(r1(r"So $\frac{a}{b} = 3$ and x = 5; then f(x) = 2x + 1.")),
                 None, id="code: inline math kept"),
    pytest.param(code_in_reasoning, {}, Sample(r1("Let me write it:\n```python\nprint(1)\n```")),
                 "fenced code block in the reasoning (line 3)", id="code: fenced block dropped"),
    pytest.param(code_in_reasoning, {}, Sample(r1("Plan:\ndef solve(n):\n    return n * 2\nprint(solve(3))")),
                 "2 lines of code in the reasoning (first at line 3)", id="code: bare Python dropped"),
    pytest.param(code_in_reasoning, {}, Sample(r1('int main() {\n  printf("%d", 4);\n}')),
                 "2 lines of code in the reasoning (first at line 2)", id="code: bare C dropped"),
    pytest.param(code_in_reasoning, {}, Sample(r1("if x > 3:\nthen the sum is even.")), None,
                 id="code: one code-like line is not enough"),
    pytest.param(repetition_loop, {}, Sample(r1("Let me add the numbers. " * 5)), None,
                 id="loop: a few repeats kept"),
    pytest.param(repetition_loop, {}, Sample("<think>" + "Wait, let me check the sum again. " * 50),
                 '20-word sequence repeated 48 times: "let me check the sum again. wait, let me check the sum agai…"',
                 id="loop: endless sentence dropped"),
    pytest.param(repetition_loop, {"n": 5}, Sample(r1("\n".join(["a long repeated line of words"] * 12))),
                 '5-word sequence repeated 12 times: "a long repeated line of"', id="loop: n-gram size is a parameter"),
    pytest.param(repetition_loop, {"n": 50}, Sample(r1("\n".join(["Step: add one to the total."] * 11))),
                 'line repeated 11 times: "Step: add one to the total."', id="loop: repeated line dropped"),
    pytest.param(repetition_loop, {}, Sample(r1("\n".join(f"$$\nx_{i} = {i}\n$$" for i in range(40)))), None,
                 id="loop: short lines ignored ($$ on 80 lines)"),
    pytest.param(truncated, {}, Sample(r1("done")), None, id="truncated: complete kept"),
    pytest.param(truncated, {}, Sample(r1("done"), finish_reason="length"),
                 "generation hit the length limit (finish_reason=length)", id="truncated: finish_reason length"),
    pytest.param(truncated, {}, Sample("<think>still thinking"), "no closing </think>",
                 id="truncated: in the think"),
    pytest.param(truncated, {}, Sample("<think>x</think><answer>4"), "no closing </answer>",
                 id="truncated: in the answer"),
    pytest.param(truncated, {}, Sample("x + y = 4, so\n</think>\n\nThe answer is $\\boxed{4}$."), None,
                 id="truncated: R1's plain answer after a think block the template opened is kept"),
]


@pytest.mark.parametrize("check, params, sample, reason", FILTER_CASES)
def test_filter(check, params, sample, reason):
    assert check(sample, **params) == (Verdict(True) if reason is None else Verdict(False, reason))


def test_mixed_language_uses_the_samples_language():
    zh = Sample(r1("首先计算和。然后 check the result."), language="zh")
    assert not mixed_language(zh).keep
    assert mixed_language(Sample(r1("首先计算两个数的和。"), language="zh")).keep


def test_apply_filters_returns_the_first_drop_reason_with_the_filters_name():
    looping_and_cut = Sample("<think>" + "Wait, let me check the sum again. " * 50, finish_reason="length")
    assert apply_filters(looping_and_cut, ["truncated", ("repetition_loop", {"n": 5})]) == Verdict(
        False, "truncated: generation hit the length limit (finish_reason=length)")
    # a dict keeps its order; params may be None
    assert apply_filters(looping_and_cut, {"code_in_reasoning": None, "repetition_loop": {"n": 5}}).reason.startswith(
        "repetition_loop: 5-word sequence repeated")
    assert apply_filters(Sample(r1("All good.")), list(FILTERS)) == Verdict(True)
    with pytest.raises(KeyError, match="unknown filter 'nope'"):
        apply_filters(Sample(r1("x")), ["nope"])


# ---------------------------------------------------------------- shaping

@pytest.mark.parametrize("length, expected", [
    (0, 1.0),  # start value at length 0
    (500, 0.75),  # halfway between start and end at half the cap
    (1000, 0.5),  # end value at the cap
    (5000, 0.5),  # clamped past the cap
    (-10, 1.0),  # clamped below 0
])
def test_cosine_scale(length, expected):
    assert cosine_scale(length, 1000, 1.0, 0.5) == pytest.approx(expected)


WORDS = " ".join(["word"] * 100)  # 100 whitespace tokens

COSINE_CASES = [
    # (completion, finish_reason, is_correct, params, value)
    pytest.param("", "stop", True, {}, 1.0, id="correct and empty: the most"),
    pytest.param(WORDS, "stop", True, {"max_len": 200}, 0.75, id="correct at half the cap"),
    pytest.param(WORDS, "stop", True, {"max_len": 100}, 0.5, id="correct at the cap: the least"),
    pytest.param(WORDS, "stop", False, {"max_len": 200}, -0.75, id="wrong at half the cap"),
    pytest.param("", "stop", False, {"max_len": 200}, -1.0, id="wrong and short: the worst"),
    pytest.param(WORDS, "stop", False, {"max_len": 100}, -0.5, id="wrong at the cap: penalised less"),
    pytest.param(WORDS, "stop", True, {"max_len": 99}, -1.0, id="over the cap: exceed penalty"),
    pytest.param(WORDS, "length", True, {"max_len": 1000}, -1.0, id="cut off: exceed penalty"),
    pytest.param(WORDS, "stop", 1.0, {"max_len": 100}, 0.5, id="an accuracy value of 1.0 is correct"),
    pytest.param(WORDS, "stop", 0.5, {"max_len": 100}, -0.5, id="a partial accuracy value is wrong"),
    pytest.param(WORDS, "stop", True, {"max_len": 1000, "unit": "chars"},
                 cosine_scale(499, 1000, 1.0, 0.5), id="length in characters"),
    pytest.param("", "stop", True, {"correct_at_0": 2.0, "correct_at_max": 1.0}, 2.0,
                 id="the paper's values are parameters"),
]


@pytest.mark.parametrize("completion, finish_reason, is_correct, params, value", COSINE_CASES)
def test_cosine_length(completion, finish_reason, is_correct, params, value):
    result = cosine_length(Sample(completion, finish_reason=finish_reason), is_correct=is_correct, **params)
    assert result.value == pytest.approx(value)


REPETITION_CASES = [
    # (completion, params, value)
    pytest.param("one two three four five six", {}, 0.0, id="no repeated 3-gram"),
    pytest.param("a b", {}, 0.0, id="fewer words than the n-gram size"),
    # 102 words of one kind: 100 trigrams, 1 distinct → 0.99 of them repeat
    pytest.param(" ".join(["again"] * 102), {}, -0.99, id="one word over and over"),
    pytest.param(" ".join(["again"] * 102), {"max_penalty": -0.5}, -0.495, id="scaled to max_penalty"),
    # "a b c a b c": 4 trigrams, 3 distinct
    pytest.param("a b c A B C", {}, -0.25, id="case-insensitive"),
    pytest.param("a b c a b c", {"ngram": 2}, -0.4, id="bigrams: 5, 3 distinct"),
]


@pytest.mark.parametrize("completion, params, value", REPETITION_CASES)
def test_repetition_penalty(completion, params, value):
    assert repetition_penalty(Sample(completion), **params).value == pytest.approx(value)


def test_repetition_penalty_refuses_a_positive_penalty():
    with pytest.raises(ValueError, match="max_penalty must be <= 0"):
        repetition_penalty(Sample("a b c"), max_penalty=0.5)


# ---------------------------------------------------------------- hostile output

HOSTILE = [
    # a 10 MB chain of thought inside well-formed tags
    pytest.param("<think>" + "The sum is even, so we halve it. " * 320_000 + "</think>\n<answer>4</answer>",
                 id="10 MB of prose"),
    # 10 MB with no space, no tag and no line break
    pytest.param("x" * 10_000_000, id="10 MB of one letter"),
    # 10 MB of Chinese, each character a word
    pytest.param("<think>" + "计算" * 5_000_000, id="10 MB of Han characters"),
    # the same sentence 300,000 times: the worst case for n-gram counting
    pytest.param("Wait, let me check again. " * 400_000, id="10 MB loop"),
    pytest.param("<think>\n" + "\n".join(f"step {i}: add {i} to the total" for i in range(10_000))
                 + "\n</think><answer>1</answer>", id="10,000 lines"),
    pytest.param("<think>\x00\x00 reasoning \x00</think><answer>\x00 4</answer>", id="NUL bytes"),
    pytest.param("<think>\ud800 reasoning \udfff 思考</think><answer>\ud800</answer>", id="lone surrogates"),
    pytest.param("<think><think> a </answer> <answer>", id="unbalanced tags"),
    pytest.param("<think></think><answer></answer>", id="only tags"),
    pytest.param("<answer>" * 100_000 + "</think>" * 100_000, id="100,000 stray tags"),
    # openers that are never closed, for every span the language component skips
    pytest.param("<think>" + "\\[ $$ ``` \\( ` ~~~ $ (" * 100_000, id="unclosed math and code openers"),
    pytest.param("<think>" + "a_b.c(camelCase " * 200_000, id="identifier soup"),
    # long letter runs that the word pattern must give up on: one linear pass each, not one per letter
    pytest.param("<think>" + "é" * 150_000 + "(" + "ab'" * 50_000 + "_", id="runs ending in code"),
    pytest.param("", id="empty"),
]

COMPONENTS = [
    pytest.param(lambda s: format_reward(s), id="format"),
    pytest.param(lambda s: format_reward(s, partial_credit=True), id="format partial"),
    pytest.param(lambda s: language_consistency(s, target="en"), id="language en"),
    pytest.param(lambda s: language_consistency(s, target="zh"), id="language zh"),
    pytest.param(lambda s: language_consistency(s, target="de"), id="language de"),
    pytest.param(lambda s: cosine_length(s, is_correct=True), id="cosine_length"),
    pytest.param(lambda s: repetition_penalty(s), id="repetition_penalty"),
    *[pytest.param(check, id=name) for name, check in FILTERS.items()],
    pytest.param(lambda s: apply_filters(s, list(FILTERS)), id="apply_filters"),
]


@pytest.fixture(scope="module", autouse=True)
def warm_language_detector():
    """Load the detector's model (about half a second, once) outside the timed calls."""
    language_consistency(Sample(r1("Zuerst berechnen wir die Summe.")), target="de")


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("completion", HOSTILE)
def test_hostile_output_gives_a_value_or_verdict_quickly(component, completion):
    start = time.perf_counter()
    result = component(Sample(completion))
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"took {elapsed:.2f} s"  # a safety bound, not a benchmark
    if isinstance(result, Reward):
        assert math.isfinite(result.value)
        if result.value == 0.0 and "reason" in result.details:
            assert result.details["reason"]
        stored = json.dumps(result.details, ensure_ascii=False)
    else:
        assert isinstance(result, Verdict)
        assert result.keep or result.reason
        stored = result.reason
    stored.encode("utf-8")  # storable as text: no lone surrogate leaked into details or reasons
    assert "\x00" not in stored  # Postgres text takes no NUL


def test_a_4k_token_completion_is_scored_in_milliseconds():
    sentences = ["First we compute the sum of the two numbers and check whether the result is even.",
                 "So $x = \\frac{3}{2}$, because otherwise the equation has no solution.",
                 "Wait, I made a mistake in step 3; let me check that again."]
    text = r1(" ".join(sentences[i % 3] + (" " + str(i)) for i in range(230)))  # about 3,300 words
    sample = Sample(text)
    for component in [format_reward, language_consistency, *FILTERS.values()]:
        start = time.perf_counter()
        component(sample)
        assert time.perf_counter() - start < 0.5  # well under in practice (~1 ms); generous for busy CI


@pytest.mark.parametrize("completion, value, reason", [
    ("<think>\n48 + 24 = 72\n</think>\nThe answer is \\boxed{72}.", 1.0, None),  # DeepSeek-R1 in chat
    ("48 + 24 = 72\n</think>\n\\boxed{72}", 1.0, None),  # the chat template opened <think> in the prompt
    ("<think>48 + 24</think>", 0.0, "empty answer"),
    ("<think></think>72", 0.0, "empty reasoning"),
    ("72", 0.0, "no closing </think>"),
    ("<think>a</think>b</think>c", 0.0, "2 </think> tags"),
    ("So: <think>a</think>b", 0.0, "text before <think>"),
    ("<think>a</think> <answer>b</answer>", 1.0, None),  # R1-Zero's tags are still a plain answer after </think>
])
def test_r1s_chat_format(completion, value, reason):
    reward = think_format(Sample(completion))
    assert (reward.value, reward.details.get("reason")) == (value, reason)

