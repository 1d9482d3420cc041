"""Evaluation arithmetic, as in the R1 report: pass@1 as the mean over k samples, the
unbiased pass@k estimator, and cons@k (majority vote over equivalent answers). No Django."""

from collections.abc import Callable, Sequence


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples with `correct` right (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ValueError(f"need 0 < k <= n, got k={k}, n={n}")
    if n - correct < k:
        return 1.0
    product = 1.0
    for i in range(n - correct + 1, n + 1):  # the ratio of binomials as a stable product
        product *= 1.0 - k / i
    return 1.0 - product


def majority_answer(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> tuple[int | None, int]:
    """Group answers by equivalence (`same`), return (index of a member of the largest group, its size).

    Missing answers (None) never win. Ties go to the group seen first.
    """
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if same(answers[group[0]], answer):
                group.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None, 0
    best = max(groups, key=len)  # max keeps the first of equal sizes
    return best[0], len(best)
