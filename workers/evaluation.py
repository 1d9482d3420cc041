"""Evaluation arithmetic, as in the R1 report: pass@1 as the mean over k samples, the
unbiased pass@k estimator, and cons@k (majority vote over equivalent answers); and 95% intervals
over prompts for them and for the difference of two evaluations. No Django."""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


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


# ---- intervals over prompts ------------------------------------------------------------------------
#
# pass@1 is a mean over prompts of per-prompt success rates (and cons@k of per-prompt 0/1 majority
# verdicts), so the prompts are the sampling unit: a prompt's k samples share its difficulty and are not
# independent draws, which is why a Wilson interval over all samples would be too narrow. The interval
# here is the normal approximation over prompts, mean ± t(0.975, m − 1) · sd / √m, with Student's t so a
# benchmark of a handful of prompts is not overconfident (a bootstrap over prompts agrees closely from
# m ≈ 30 on and costs a resampling loop per page). Two evaluations of the same prompts are compared on
# the per-prompt differences (paired), which removes the prompts' shared difficulty from the noise.

Z_975 = 1.959963984540054
# Student's t, 0.975 quantile, for 1 to 30 degrees of freedom (beyond: the series in t_975).
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)


def t_975(df: int) -> float:
    """Student's t 0.975 quantile: a table to 30 degrees of freedom, then the Cornish-Fisher series in 1/df
    (Abramowitz and Stegun 26.7.5; off by under 1e-4 there)."""
    if df < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {df}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = Z_975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Interval:
    """A mean over `n` prompts with its 95% interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """For a difference: significant at the 5% level (two-sided)."""
        return self.low > 0 or self.high < 0


def mean_interval(values: Sequence[float], bounds: tuple[float, float] = (0.0, 1.0)) -> Interval | None:
    """The mean of per-prompt values with its 95% interval (see above), kept within `bounds`; None for fewer
    than two values, where there is no spread to estimate."""
    m = len(values)
    if m < 2:
        return None
    mean = math.fsum(values) / m
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (m - 1))
    half = t_975(m - 1) * sd / math.sqrt(m)
    return Interval(mean, max(bounds[0], mean - half), min(bounds[1], mean + half), m)


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> Interval | None:
    """B − A over the prompts both have: the mean per-prompt difference and its 95% interval."""
    shared = sorted(a.keys() & b.keys())
    return mean_interval([b[key] - a[key] for key in shared], bounds=(-1.0, 1.0))
