"""Cohen's and Fleiss' kappa against textbook values, and the cases where kappa is undefined."""

import pytest

from apps.curation.agreement import cohen_kappa, fleiss_kappa, fleiss_kappa_from_counts


def pairs_from_table(yes_yes, yes_no, no_yes, no_no):
    """A 2×2 table of two raters (rows: rater A, columns: rater B) as (A, B) pairs."""
    return ([("yes", "yes")] * yes_yes + [("yes", "no")] * yes_no + [("no", "yes")] * no_yes
            + [("no", "no")] * no_no)


def test_cohen_kappa_of_the_worked_example_is_0_4():
    # Wikipedia, "Cohen's kappa", simple example: 50 grant proposals read by two readers.
    result = cohen_kappa(pairs_from_table(20, 5, 10, 15))
    assert result.observed == pytest.approx(0.7)
    assert result.expected == pytest.approx(0.5)
    assert result.kappa == pytest.approx(0.4)
    assert result.items == 50
    assert result.shown == "0.400"


@pytest.mark.parametrize(("table", "kappa"), [((45, 15, 25, 15), 0.1304), ((25, 35, 5, 35), 0.2593)])
def test_cohen_kappa_same_observed_agreement_different_marginals(table, kappa):
    # Wikipedia's "same percentages but different numbers": both agree on 60%, kappa differs.
    result = cohen_kappa(pairs_from_table(*table))
    assert result.observed == pytest.approx(0.6)
    assert result.kappa == pytest.approx(kappa, abs=5e-5)


def test_cohen_kappa_over_three_verdicts_by_hand():
    pairs = [("accept", "accept")] * 4 + [("reject", "reject")] * 3 + [("edit", "edit")] * 1 + [
        ("accept", "edit"), ("edit", "reject")]
    result = cohen_kappa(pairs)
    # A: accept 5, reject 3, edit 2; B: accept 4, reject 4, edit 2 (of 10). P_e = .20 + .12 + .04 = .36.
    assert result.observed == pytest.approx(0.8)
    assert result.expected == pytest.approx(0.36)
    assert result.kappa == pytest.approx((0.8 - 0.36) / 0.64)


def test_perfect_and_opposite_agreement():
    assert cohen_kappa([("accept", "accept"), ("reject", "reject")]).kappa == pytest.approx(1.0)
    assert cohen_kappa([("accept", "reject"), ("reject", "accept")]).kappa == pytest.approx(-1.0)


WIKIPEDIA_FLEISS = [  # 10 subjects, 14 raters each, 5 categories (Wikipedia, "Fleiss' kappa", worked example)
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_the_worked_example_is_0_210():
    result = fleiss_kappa_from_counts(WIKIPEDIA_FLEISS)
    assert result.observed == pytest.approx(0.378, abs=5e-4)
    assert result.expected == pytest.approx(0.213, abs=5e-4)
    assert result.kappa == pytest.approx(0.210, abs=5e-4)
    assert result.items == 10


def test_fleiss_kappa_from_ratings_matches_the_counts():
    categories = ["c1", "c2", "c3", "c4", "c5"]
    ratings = [[c for c, n in zip(categories, row) for _ in range(n)] for row in WIKIPEDIA_FLEISS]
    assert fleiss_kappa(ratings).kappa == pytest.approx(fleiss_kappa_from_counts(WIKIPEDIA_FLEISS).kappa)


def test_fleiss_kappa_with_two_raters_is_close_to_cohen():
    pairs = pairs_from_table(20, 5, 10, 15)
    fleiss = fleiss_kappa([list(p) for p in pairs])
    # Two raters: Fleiss' P_e pools both raters' marginals (Scott's pi), so close to, not equal to, Cohen's.
    assert fleiss.observed == pytest.approx(0.7)
    assert fleiss.kappa == pytest.approx(0.3939, abs=1e-4)  # pooled shares .55/.45: P_e = .505


def test_one_category_only_is_undefined_not_a_crash():
    every_accept = cohen_kappa([("accept", "accept")] * 5)
    assert every_accept.kappa is None and every_accept.observed == 1.0 and every_accept.shown == "n/a"
    fleiss = fleiss_kappa([["accept", "accept", "accept"]] * 4)
    assert fleiss.kappa is None and fleiss.observed == 1.0 and fleiss.items == 4


def test_no_items():
    assert cohen_kappa([]).kappa is None and cohen_kappa([]).items == 0
    assert fleiss_kappa([]).kappa is None and fleiss_kappa([]).shown == "n/a"


def test_fleiss_needs_the_same_number_of_raters_per_item():
    with pytest.raises(ValueError, match="item 2 has 2 ratings, the others 3"):
        fleiss_kappa([["accept", "accept", "edit"], ["accept", "reject"]])
    with pytest.raises(ValueError, match="at least 2 ratings"):
        fleiss_kappa([["accept"], ["reject"]])
