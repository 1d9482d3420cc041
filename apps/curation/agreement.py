"""Inter-annotator agreement over verdict categories: Cohen's kappa (two raters) and Fleiss' kappa (k raters).

Pure functions, no Django. Kappa is (P_o − P_e) / (1 − P_e): the observed agreement
corrected for the agreement expected by chance. When every rating falls in one
category P_e is 1 and kappa is undefined (0/0): the result says so with None
rather than inventing a number.
"""

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

CATEGORIES = ("accept", "reject", "edit")


@dataclass(frozen=True)
class Agreement:
    kappa: float | None  # None: undefined (one category only, or no items)
    observed: float | None  # P_o, the share of agreeing (pairs of) ratings
    expected: float | None  # P_e, the agreement expected by chance
    items: int  # how many items the figures are over

    @property
    def shown(self) -> str:
        return "n/a" if self.kappa is None else f"{self.kappa:.3f}"


def _kappa(observed: float, expected: float) -> float | None:
    if expected >= 1.0 - 1e-12:
        return None
    return (observed - expected) / (1.0 - expected)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> Agreement:
    """Cohen's kappa for two raters; `pairs` holds (rater A's category, rater B's category) per item."""
    n = len(pairs)
    if n == 0:
        return Agreement(None, None, None, 0)
    observed = sum(1 for a, b in pairs if a == b) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    return Agreement(_kappa(observed, expected), observed, expected, n)


def fleiss_kappa_from_counts(counts: Sequence[Sequence[int]]) -> Agreement:
    """Fleiss' kappa from an items × categories table of how many raters chose each category.

    Every item must have the same number of raters n ≥ 2 (Fleiss 1971); a row that does not
    raises ValueError naming it.
    """
    if not counts:
        return Agreement(None, None, None, 0)
    raters = sum(counts[0])
    if raters < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 ratings per item, item 1 has {raters}")
    for index, row in enumerate(counts, start=1):
        if sum(row) != raters or any(c < 0 for c in row):
            raise ValueError(
                f"item {index} has {sum(row)} ratings, the others {raters}: every item needs the same number")
    items = len(counts)
    total = items * raters
    shares = [sum(row[j] for row in counts) / total for j in range(len(counts[0]))]
    per_item = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    observed = sum(per_item) / items
    expected = sum(p * p for p in shares)
    return Agreement(_kappa(observed, expected), observed, expected, items)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> Agreement:
    """Fleiss' kappa from each item's list of categories (one per rater; the same number of raters per item)."""
    categories = sorted({c for item in ratings for c in item}, key=str)
    index = {c: j for j, c in enumerate(categories)}
    counts = []
    for item in ratings:
        row = [0] * len(categories)
        for category in item:
            row[index[category]] += 1
        counts.append(row)
    return fleiss_kappa_from_counts(counts)
