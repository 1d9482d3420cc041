"""Answer extraction and math accuracy, table-driven; each hostile case scores 0 with a reason, quickly."""

import time

import pytest

from workers.rewards.accuracy import math_accuracy
from workers.rewards.base import Sample
from workers.rewards.extract import extract_answer, last_boxed, split_completion

EXTRACTION = [
    # (completion, expected answer, expected method) — comment: why the case matters
    ("<think>x</think><answer>42</answer>", "42", "answer_tag"),  # the R1-Zero template
    ("<answer>so \\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}", "answer_tag"),  # boxed inside the answer tag wins
    ("first \\boxed{1} then \\boxed{2}", "2", "boxed"),  # the last boxed, not the first
    ("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}", "boxed"),  # nested braces
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}", "boxed"),  # escaped braces do not count
    ("\\boxed{1} and \\boxed{2", "1", "boxed"),  # an unclosed last box falls back to the one before
    ("work...\n#### 1,234", "1,234", "regex:####\\s*(.+)"),  # GSM8K reference style
    ("steps\nA: 18", "18", "regex:(?im)^\\s*A:\\s*(.+)$"),  # GSM8K model-solution style
    ("So the final answer is $7$.", "7", "regex:(?i)final answer is:?\\s*\\$?(.+?)\\$?\\s*(?:\\.\\s*)?$"),
    ("no answer here", None, "none"),
    ("<answer>   </answer>", None, "none"),  # an empty answer tag is no answer
]


@pytest.mark.parametrize("completion, answer, method", EXTRACTION)
def test_extraction(completion, answer, method):
    found = extract_answer(completion)
    assert found.text == answer
    assert found.method == method


def test_split_keeps_reasoning_and_answer_apart():
    assert split_completion("<think> add 2 and 2 </think> <answer> 4 </answer>") == ("add 2 and 2", "4")
    assert split_completion("<think> cut off mid-thought") == ("cut off mid-thought", "")


ACCURACY = [
    # (answer as written, reference, correct?) — comment: the equivalence math-verify must see
    ("\\frac{1}{2}", "0.5", True),  # fraction vs decimal
    ("50\\%", "\\frac{1}{2}", True),  # percentage
    ("[1,2)", "[1,2)", True),  # interval
    ("\\{1,2\\}", "\\{2,1\\}", True),  # set order does not matter
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),  # matrix
    ("\\sqrt{8}", "2\\sqrt{2}", True),  # radicals
    ("2\\pi", "2\\pi", True),  # pi
    ("10\\text{ cm}", "10", True),  # units and \text{} stripped
    ("30^\\circ", "30", True),  # degrees
    ("x = 3", "3", True),  # an equation's right-hand side
    ("1,234", "#### 1234", True),  # thousands separator; the reference's '####' line
    ("(C)", "C", True),  # multiple choice
    ("\\text{B}", "C", False),  # the wrong choice
    ("\\frac{1}{3}", "0.5", False),
    ("0.333", "\\frac{1}{3}", False),  # rounding is not equality
    # Closed forms that math-verify leaves symbolic: equal once i, e and pi mean what they mean.
    ("e^{i\\pi}", "-1", True),
    ("e^{i\\pi}+1", "0", True),
    ("i^4", "1", True),
    ("\\sqrt{-1}", "i", True),  # "i" is the imaginary unit here, not choice I
    ("2.718281828459045", "e", True),  # and "e" is Euler's number, not choice E
    ("i^4", "2", False),
    ("e^{i x}", "-1", False),  # a free symbol: not evaluated
    ("2.7", "e", False),
]

CHOICES = [
    # (the answer as a model writes it, correct against reference "B"?)
    ("B", True), ("(B)", True), ("B)", True), ("B.", True), ("B: 42", True), ("(B) 42", True),
    ("\\text{(B)}", True), ("\\text{B}", True), ("\\textbf{B}", True), ("\\mathrm{B}", True), ("**B**", True),
    ("$B$", True), ("the answer is B", True), ("The answer is (b)", True), ("Option B", True),
    ("C", False), ("(C)", False), ("\\text{(C)}", False),
    ("b", False),  # a lone lower-case letter is a variable, not a choice
    ("Because it is", False),  # a word that starts with the letter
]


@pytest.mark.parametrize("answer, correct", CHOICES)
def test_multiple_choice_letters_in_any_common_wrapping(answer, correct):
    reward = math_accuracy(Sample(f"<think>work</think> <answer>{answer}</answer>", reference="B"))
    assert reward.value == (1.0 if correct else 0.0), reward.details
    assert (reward.details["parsed_answer"] == "B") is correct


@pytest.mark.parametrize("answer, reference, correct", ACCURACY)
def test_math_accuracy(answer, reference, correct):
    reward = math_accuracy(Sample(f"<think>work</think> <answer>\\boxed{{{answer}}}</answer>", reference=reference))
    assert reward.value == (1.0 if correct else 0.0), reward.details
    assert reward.details["extracted"] == answer
    if not correct:
        assert reward.details["reason"]


HOSTILE = [
    # (completion, reason fragment) — each scores 0 with a reason, in bounded time
    ("x" * 10_000_000, "no final answer found"),  # 10 MB of text, no answer
    ("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "the final answer is too long"),  # 10,000 nested braces
    ("\\boxed{" * 100_000, "no final answer found"),  # 100,000 unclosed boxes: linear, not quadratic
    ("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "nests powers"),  # a power tower sympy would try to evaluate
    ("\\boxed{" + "9" * 20_000 + "}", "too long"),  # a 20,000-digit number
    ("\\boxed{" + "9" * 900 + "}", "more than 400 digits"),  # a long number that fits the answer limit
    ("\\boxed{1/0}", "does not match"),  # division by zero is zoo, not 1
    ("\\boxed{\\frac{1}{0}}", "does not match"),
    ("\\boxed{\\frac{\\frac{}{}}{}}", "does not match"),  # malformed LaTeX is compared as text
    ("caf\udce9 \\boxed{2\x00}", "does not match"),  # lone surrogate and NUL from a wrongly decoded file
]


@pytest.mark.parametrize("completion, reason", HOSTILE)
def test_hostile_answers_score_zero_with_a_reason(completion, reason):
    start = time.monotonic()
    reward = math_accuracy(Sample(completion, reference="1"))
    assert time.monotonic() - start < 5  # a safety bound, not a benchmark
    assert reward.value == 0.0
    assert reason in reward.details["reason"]


def test_last_boxed_is_linear_on_many_open_boxes():
    start = time.monotonic()
    assert last_boxed("\\boxed{" * 200_000) is None
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    "reference, answer, verdict",
    [
        ("[1,2)", "[1, 2)", True),  # the same text up to spaces: no sympy needed
        ("1234", "1,234", True),  # plain numbers, thousands separators
        ("0.5", "0.5000001", True),  # equal at math-verify's 6-digit rounding
        ("3", "4", False),
        ("\\{1,2\\}", "\\{2, 1\\}", True),  # sets of plain numbers: order does not matter
        ("\\{1,2\\}", "\\{1, 3\\}", False),
        ("\\frac{1}{2}", "0.5", None),  # not plain: math-verify decides
        ("12", "1,2", None),  # "1,2" is a tuple or a list, not a number
    ],
)
def test_plain_cases_are_settled_without_sympy(reference, answer, verdict):
    from workers.rewards.accuracy import quick_verdict

    assert quick_verdict(reference, answer) is verdict
