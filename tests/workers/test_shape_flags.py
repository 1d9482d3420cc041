from workers.rewards.extract import split_completion
from workers.rewards.shape import (
    OUTSIDE_TEMPLATE,
    REPEATED_TEXT,
    SHORT_REASONING,
    flag_labels,
    shape_flags,
)


def flags_of(completion):
    reasoning, answer = split_completion(completion)
    return shape_flags(completion, reasoning, answer)


def test_a_well_formed_completion_has_no_flags():
    text = "<think>48 clips in April, half as many in May is 24, so 48 + 24 = 72.</think> <answer>72</answer>"
    assert flags_of(text) == 0


def test_an_answer_with_almost_no_reasoning():
    assert flags_of("<think>ok</think><answer>72</answer>") == SHORT_REASONING
    assert flags_of("<think>ok</think>") == 0  # no answer: not a shortcut, just wrong


def test_repeated_text():
    text = "<think>" + "wait let me check again. " * 40 + "so the answer is 72</think><answer>72</answer>"
    assert flags_of(text) & REPEATED_TEXT
    assert "repeated text" in flag_labels(flags_of(text))


def test_text_outside_the_template():
    body = "<think>48 clips in April, half as many in May is 24, so 48 + 24 = 72.</think><answer>72</answer>"
    assert flags_of(body + " Also, 73.") == OUTSIDE_TEMPLATE
    assert flags_of("Sure! " + body) == OUTSIDE_TEMPLATE
    assert flags_of(body + "\n\n") == 0


def test_five_megabytes_of_one_word_is_repetition_not_a_hang():
    text = "<think>" + "a " * 2_500_000 + "</think><answer>1</answer>"
    assert flags_of(text) == REPEATED_TEXT
