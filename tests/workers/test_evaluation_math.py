from math import comb

import pytest

from workers.evaluation import majority_answer, pass_at_k


@pytest.mark.parametrize("n, c, k", [(10, 3, 1), (10, 3, 5), (16, 0, 4), (16, 16, 4), (64, 7, 8), (5, 1, 5)])
def test_pass_at_k_matches_the_binomial_formula(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_the_share_correct():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)


def test_pass_at_k_refuses_k_over_n():
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(4, 1, 5)


def equal_numbers(a, b):
    return float(a) == float(b)


@pytest.mark.parametrize(
    "answers, winner, votes",
    [
        (["2", "3", "2.0", "3", "3"], 1, 3),  # 3 three times beats 2 twice
        (["2", "3.0", "2", "3"], 0, 2),  # a tie goes to the group seen first
        ([None, None, "5"], 2, 1),  # missing answers never win
        ([None, None], None, 0),
    ],
)
def test_majority_groups_equivalent_answers(answers, winner, votes):
    assert majority_answer(answers, equal_numbers) == (winner, votes)
