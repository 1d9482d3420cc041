from math import comb

import pytest

from workers.evaluation import majority_answer, mean_interval, paired_difference, pass_at_k, t_975


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


# ---- 95% intervals over prompts: known values ----------------------------------------------------


@pytest.mark.parametrize("df, expected", [(1, 12.706), (4, 2.776), (30, 2.042), (31, 2.0395), (60, 2.0003),
                                          (120, 1.9799), (1_000_000, 1.96)])
def test_t_975_matches_students_table(df, expected):
    assert t_975(df) == pytest.approx(expected, abs=1e-4)


def test_t_975_needs_a_degree_of_freedom():
    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        t_975(0)


def test_mean_interval_of_four_prompts():
    # mean 0.5; sd √(0.2/3) = 0.25820; se 0.12910; t(3) = 3.182 → ± 0.41080.
    interval = mean_interval([0.2, 0.4, 0.6, 0.8])
    assert (interval.mean, interval.n) == (0.5, 4)
    assert (interval.low, interval.high) == (pytest.approx(0.08920, abs=1e-5), pytest.approx(0.91080, abs=1e-5))


def test_mean_interval_of_a_hundred_prompts_half_solved():
    # sd √(25/99) = 0.50252; se 0.050252; t(99) = 1.98422 → ± 0.099711.
    interval = mean_interval([0.0] * 50 + [1.0] * 50)
    assert (interval.low, interval.high) == (pytest.approx(0.400289, abs=1e-5), pytest.approx(0.599711, abs=1e-5))


def test_mean_interval_stays_within_its_bounds_and_needs_two_prompts():
    assert (mean_interval([0.0, 1.0]).low, mean_interval([0.0, 1.0]).high) == (0.0, 1.0)  # ± 6.35, cut to [0, 1]
    assert mean_interval([0.7]) is None and mean_interval([]) is None
    same = mean_interval([0.25, 0.25, 0.25])
    assert (same.low, same.high) == (0.25, 0.25)  # no spread between prompts


def test_paired_difference_uses_the_shared_prompts_and_says_when_it_excludes_zero():
    a = {"1": 0.25, "2": 0.5, "3": 0.75, "only in a": 0.0}
    b = {"1": 0.5, "2": 0.75, "3": 1.0, "only in b": 1.0}
    better = paired_difference(a, b)  # +0.25 on each of the 3 shared prompts
    assert (better.mean, better.low, better.high, better.n) == (0.25, 0.25, 0.25, 3) and better.excludes_zero
    worse = paired_difference(b, a)
    assert (worse.mean, worse.high) == (-0.25, -0.25) and worse.excludes_zero
    # Differences of +0.5, -0.25, +0.25, 0: mean 0.125, sd 0.32275, se 0.16137, t(3) = 3.182 → ± 0.51349.
    mixed = paired_difference({"1": 0, "2": 0.5, "3": 0, "4": 0.5}, {"1": 0.5, "2": 0.25, "3": 0.25, "4": 0.5})
    assert (mixed.low, mixed.high) == (pytest.approx(-0.38849, abs=1e-5), pytest.approx(0.63849, abs=1e-5))
    assert not mixed.excludes_zero
    assert paired_difference({"1": 0.5}, {"1": 1.0}) is None  # one shared prompt: no interval
