"""The evaluation pages: every checkpoint's scores side by side per benchmark, and two evaluations
of one benchmark compared prompt by prompt (which prompts a checkpoint solves more or less often).

Intervals are 95% intervals over prompts (workers.evaluation.mean_interval: the prompts are the
sampling unit); a difference is significant when the interval of the paired per-prompt difference
excludes 0. Only significant differences are coloured or highlighted as better or worse."""

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.training.models import Evaluation
from workers.evaluation import Interval, mean_interval, paired_difference, pass_at_k

# The fixed and broken lists show the biggest changes first; past this many rows a page is unreadable anyway.
LISTED_PROMPTS = 500


class ComparisonError(Exception):
    """A comparison the page cannot show; the message says why and `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- numbers in words

MINUS = "\u2212"  # a real minus sign: a hyphen reads as a dash next to a range


def number(value: float, digits: int = 3) -> str:
    """Rounded half up (1/16 is 0.063, not the float's 0.062), a minus sign for negatives, no sign otherwise."""
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = str(abs(rounded))  # what rounds to 0 has no sign
    return MINUS + text if rounded < 0 else text


def signed(value: float, digits: int = 3) -> str:
    """+0.063, −0.063 and 0.000: the sign of a change says which way it went, whatever its colour."""
    text = number(value, digits)
    return text if text.startswith(MINUS) or float(text) == 0 else "+" + text


def interval_text(interval: Interval | None, with_sign: bool = False) -> str:
    """"0.210–0.590", or for a difference "−0.050 to +0.120"; "" when there is no interval."""
    if interval is None:
        return ""
    if with_sign:
        return f"{signed(interval.low)} to {signed(interval.high)}"
    return f"{number(interval.low)}–{number(interval.high)}"


def per_prompt_values(per_prompt: dict, metric: str) -> dict[str, float]:
    """Each prompt's own value of `metric`, whose mean over prompts is the metric: pass@1 is correct / n,
    pass@k the unbiased estimator from the prompt's n and correct, cons@k its majority verdict (0 or 1)."""
    family, _, k = metric.partition("@")
    results = {key: r for key, r in (per_prompt or {}).items() if r.get("n")}
    if family == "pass" and k.isdigit():
        k = int(k)
        return {key: pass_at_k(r["n"], min(r.get("correct", 0), r["n"]), k) for key, r in results.items()
                if r["n"] >= k}
    if family == "cons":
        return {key: float(bool(r.get("majority_correct"))) for key, r in results.items()}
    return {}


def significantly_better(better: dict[str, float], worse: dict[str, float]) -> bool:
    """Whether `better` beats `worse` on their shared prompts: the paired difference's interval is above 0."""
    difference = paired_difference(worse, better)
    return difference is not None and difference.low > 0


# ---------------------------------------------------------------- checkpoints side by side


@dataclass
class Benchmark:
    dataset: Dataset
    cons_name: str = "cons@k"  # "cons@8" when every evaluation on it used the same k
    settings: str = ""  # "k=8, temperature 0.6" when shared by every evaluation on it, else ""


@dataclass
class Cell:
    evaluation: Evaluation  # the latest of `runs` evaluations of this checkpoint on this benchmark
    runs: int
    pass1: float | None
    cons: float | None
    cons_name: str
    pass1_interval: Interval | None = None
    best_pass1: bool = False
    best_cons: bool = False
    per_prompt: dict = field(default_factory=dict, repr=False)  # only while the best values are marked

    @property
    def pass1_ci(self) -> str:
        return interval_text(self.pass1_interval)

    @property
    def settings(self) -> str:
        e = self.evaluation
        return f"k={e.k}, temperature {e.temperature:g}, top-p {e.top_p:g}"


@dataclass
class CheckpointRow:
    model: ModelVersion
    depth: int  # generations below its lineage root, for indentation
    cells: list[Cell | None] = field(default_factory=list)  # one per benchmark, in the table's benchmark order


@dataclass
class EvaluationTable:
    benchmarks: list[Benchmark]
    rows: list[CheckpointRow]
    evaluations: list[Evaluation]  # every evaluation shown or superseded, for the compare form's choices
    all_benchmarks: list[str]  # names of every dataset with evaluations, for the filter
    default_a: int | None = None  # the compare form starts on the first benchmark's two newest evaluations
    default_b: int | None = None


def cons_metric(metrics: dict, k: int) -> tuple[str, float | None]:
    """The cons@k of an evaluation; its key carries k, so fall back to whichever cons@ key is there."""
    name = f"cons@{k}"
    if name in metrics:
        return name, metrics[name]
    for key, value in metrics.items():
        if key.startswith("cons@"):
            return key, value
    return "cons@k", None


def lineage_order(models: list[ModelVersion]) -> list[tuple[ModelVersion, int]]:
    """Models depth first from each lineage root (roots and siblings in creation order), with their depth."""
    by_id = {m.pk: m for m in models}
    children: dict[int | None, list[ModelVersion]] = {}
    for m in models:
        parent = m.parent_id if m.parent_id in by_id else None
        children.setdefault(parent, []).append(m)
    ordered, seen = [], set()

    def visit(node, depth):
        stack = [(node, depth)]
        while stack:
            current, level = stack.pop()
            if current.pk in seen:  # a parent cycle must not loop forever
                continue
            seen.add(current.pk)
            ordered.append((current, level))
            stack.extend((child, level + 1) for child in sorted(children.get(current.pk, []), key=_created,
                                                                   reverse=True))

    for root in sorted(children.get(None, []), key=_created):
        visit(root, 0)
    for m in sorted(models, key=_created):  # only members of a parent cycle have no root
        visit(m, 0)
    return ordered


def _created(obj) -> tuple:
    return (obj.created_at, obj.pk)


def evaluation_table(dataset_name: str | None = None) -> EvaluationTable:
    """Four queries: the evaluations (without their per-prompt results), the model versions, the benchmark
    names, and the per-prompt results of the evaluations shown (for intervals and significance)."""
    evaluations = Evaluation.objects.select_related("dataset").defer("per_prompt")
    if dataset_name:
        evaluations = evaluations.filter(dataset__name=dataset_name)
    evaluations = sorted(evaluations, key=_created)
    all_benchmarks = list(Dataset.objects.filter(evaluations__isnull=False).distinct().values_list("name", flat=True))

    # The whole lineage is needed to order rows even when an ancestor has no evaluation of its own.
    models = list(ModelVersion.objects.only("id", "name", "stage", "step", "parent_id", "created_at"))
    model_by_id = {m.pk: m for m in models}
    for e in evaluations:
        e.model_version = model_by_id[e.model_version_id]

    latest: dict[tuple[int, int], Evaluation] = {}
    runs: dict[tuple[int, int], int] = {}
    for e in evaluations:  # oldest first, so the last one written wins
        key = (e.model_version_id, e.dataset_id)
        latest[key] = e
        runs[key] = runs.get(key, 0) + 1

    datasets = sorted({e.dataset_id: e.dataset for e in evaluations}.values(), key=lambda d: d.name)
    benchmarks = [_benchmark(d, [e for key, e in latest.items() if key[1] == d.pk]) for d in datasets]
    evaluated = {model_id for model_id, _ in latest}
    per_prompt = dict(Evaluation.objects.filter(pk__in=[e.pk for e in latest.values()])
                      .values_list("pk", "per_prompt")) if latest else {}
    rows = []
    for model, depth in lineage_order(models):
        if model.pk not in evaluated:
            continue
        row = CheckpointRow(model, depth)
        for benchmark in benchmarks:
            evaluation = latest.get((model.pk, benchmark.dataset.pk))
            row.cells.append(_cell(evaluation, runs[(model.pk, benchmark.dataset.pk)], per_prompt[evaluation.pk])
                             if evaluation else None)
        rows.append(row)
    _mark_best(rows, len(benchmarks))
    for row in rows:
        for cell in row.cells:
            if cell:
                cell.per_prompt = {}  # marked: the page needs only the intervals

    choices = sorted(evaluations, key=lambda e: (e.dataset.name, -e.pk))
    table = EvaluationTable(benchmarks, rows, choices, all_benchmarks)
    first_benchmark = [e for e in choices if e.dataset_id == choices[0].dataset_id] if choices else []
    if len(first_benchmark) >= 2:  # older as A, newer as B: "what did the new checkpoint change"
        table.default_b, table.default_a = first_benchmark[0].pk, first_benchmark[1].pk
    return table


def _benchmark(dataset: Dataset, shown: list[Evaluation]) -> Benchmark:
    benchmark = Benchmark(dataset)
    ks = {e.k for e in shown}
    if len(ks) == 1:
        benchmark.cons_name = f"cons@{ks.pop()}"
    settings = {(e.k, e.temperature, e.top_p) for e in shown}
    if len(settings) == 1:
        k, temperature, top_p = settings.pop()
        benchmark.settings = f"k={k}, temperature {temperature:g}, top-p {top_p:g}"
    return benchmark


def _cell(evaluation: Evaluation, runs: int, per_prompt: dict) -> Cell:
    cons_name, cons = cons_metric(evaluation.metrics, evaluation.k)
    interval = mean_interval(list(per_prompt_values(per_prompt, "pass@1").values()))
    return Cell(evaluation, runs, _number(evaluation.metrics.get("pass@1")), _number(cons), cons_name,
                pass1_interval=interval, per_prompt=per_prompt or {})


def _number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mark_best(rows: list[CheckpointRow], benchmarks: int) -> None:
    """Highlight a column's best value only where it is significantly better than every other checkpoint's
    (the interval of the paired per-prompt difference is above 0): a best value within the noise, a tie
    or a column with one value has nothing highlighted."""
    for column in range(benchmarks):
        cells = [row.cells[column] for row in rows if row.cells[column] is not None]
        for metric, per_prompt_metric in (("pass1", "pass@1"), ("cons", "cons@k")):
            valued = [c for c in cells if getattr(c, metric) is not None]
            if len(valued) < 2:
                continue
            best = max(valued, key=lambda c: getattr(c, metric))
            values = {id(c): per_prompt_values(c.per_prompt, per_prompt_metric) for c in valued}
            if all(significantly_better(values[id(best)], values[id(other)]) for other in valued if other is not best):
                setattr(best, f"best_{metric}", True)


# ---------------------------------------------------------------- two evaluations, prompt by prompt


def evaluation_pair(a: str | None, b: str | None) -> tuple[Evaluation, Evaluation]:
    """The two evaluations named by the query string, on the same benchmark, in one query."""
    if not a or not b:
        raise ComparisonError("Pick two evaluations to compare: a and b are evaluation ids.")
    try:
        a_id, b_id = int(a), int(b)
    except ValueError:
        raise ComparisonError(f"a and b must be evaluation ids (whole numbers), not {a!r} and {b!r}.") from None
    found = Evaluation.objects.select_related("model_version", "dataset").in_bulk([a_id, b_id])
    missing = [str(i) for i in (a_id, b_id) if i not in found]
    if missing:
        raise ComparisonError(f"No evaluation #{' or #'.join(dict.fromkeys(missing))}.", status=404)
    first, second = found[a_id], found[b_id]
    if first.dataset_id != second.dataset_id:
        raise ComparisonError(
            f"Evaluation #{a_id} is on {first.dataset.name} and #{b_id} on {second.dataset.name}: "
            "only two evaluations of the same benchmark can be compared prompt by prompt.")
    return first, second


@dataclass
class MetricRow:
    name: str
    a: object
    b: object
    difference: float | None  # B − A
    interval_a: Interval | None = None
    interval_b: Interval | None = None
    interval_difference: Interval | None = None  # paired, over the prompts both evaluated

    @property
    def score(self) -> bool:
        """pass@k and cons@k are better higher; counts such as `prompts` are neither better nor worse."""
        return "@" in self.name

    @property
    def tone(self) -> str:
        """"better" or "worse" only when the difference is significant; "" (no colour) otherwise."""
        interval = self.interval_difference
        if not self.score or interval is None or not interval.excludes_zero:
            return ""
        return "better" if interval.low > 0 else "worse"

    @property
    def difference_text(self) -> str:
        if self.difference is None:
            return "—"
        return signed(self.difference, 0 if not self.score and float(self.difference).is_integer() else 3)

    @property
    def a_ci(self) -> str:
        return interval_text(self.interval_a)

    @property
    def b_ci(self) -> str:
        return interval_text(self.interval_b)

    @property
    def difference_ci(self) -> str:
        return interval_text(self.interval_difference, with_sign=True)


@dataclass
class PromptChange:
    prompt_id: int
    correct_a: int
    n_a: int
    correct_b: int
    n_b: int
    change: float  # success rate in B − success rate in A: what the prompt adds to the pass@1 difference
    majority_a: bool = False  # the majority answer (cons@k's vote) is right
    majority_b: bool = False
    question: str = ""
    reference_answer: str = ""
    missing: bool = False  # the prompt was deleted since the evaluations ran

    @property
    def tone(self) -> str:
        return "better" if self.change > 0 else "worse" if self.change < 0 else ""

    @property
    def change_text(self) -> str:
        return signed(self.change)


@dataclass
class PromptComparison:
    counts: list[tuple[str, int]]  # (group by success rate, prompts) in display order
    majority: list[tuple[str, int]]  # (group by majority vote, prompts): fixed, broken, both right, both wrong
    improved: list[PromptChange]  # solved more often in B; biggest change first
    regressed: list[PromptChange]  # solved less often in B
    improved_total: int
    regressed_total: int

    @property
    def sections(self) -> list[dict]:
        """The two lists the page shows, in one shape so the template writes the table once."""
        return [
            {"key": "improved", "title": "Improved: solved more often in B", "changes": self.improved,
             "total": self.improved_total},
            {"key": "regressed", "title": "Regressed: solved less often in B", "changes": self.regressed,
             "total": self.regressed_total},
        ]


def metric_rows(a: Evaluation, b: Evaluation) -> list[MetricRow]:
    """Each metric of A and B, their difference, and for scores the 95% intervals of A, B and the paired
    difference computed from the per-prompt results."""
    rows = []
    for name in sorted({*a.metrics, *b.metrics}, key=_metric_order):
        value_a, value_b = a.metrics.get(name), b.metrics.get(name)
        both = _number(value_a) is not None and _number(value_b) is not None
        row = MetricRow(name, value_a, value_b, value_b - value_a if both else None)
        if row.score:
            in_a, in_b = per_prompt_values(a.per_prompt, name), per_prompt_values(b.per_prompt, name)
            row.interval_a, row.interval_b = mean_interval(list(in_a.values())), mean_interval(list(in_b.values()))
            row.interval_difference = paired_difference(in_a, in_b)
        rows.append(row)
    return rows


def _metric_order(name: str) -> tuple:
    """Counts first, then pass@k by k, then cons@k: jsonb does not keep the order the job wrote them in."""
    family, _, k = name.partition("@")
    rank = {"pass": 1, "cons": 2}.get(family, 0) if k else 0
    return (rank, int(k) if k.isdigit() else 0, name)


def compare_prompts(a: Evaluation, b: Evaluation, listed: int = LISTED_PROMPTS) -> PromptComparison:
    """The prompts both evaluated, grouped by how their success rate changed (the lists: each change has the
    sign of its list) and, apart, by their majority verdicts (cons@k's fixed and broken). A prompt can go
    from 1/16 to 2/16 while its majority answer turns wrong: it is improved by rate and broken by vote, and
    the page says both. Plain dict work, one query for the listed texts."""
    results_a, results_b = a.per_prompt or {}, b.per_prompt or {}
    improved, regressed, unchanged = [], [], 0
    majority = {"fixed": 0, "broken": 0, "both right": 0, "both wrong": 0}
    for key in results_a.keys() & results_b.keys():
        in_a, in_b = results_a[key], results_b[key]
        right_a, right_b = bool(in_a.get("majority_correct")), bool(in_b.get("majority_correct"))
        majority[("both right" if right_a else "both wrong") if right_a == right_b
                 else ("fixed" if right_b else "broken")] += 1
        change = _accuracy(in_b) - _accuracy(in_a)
        if change == 0:
            unchanged += 1
            continue
        (improved if change > 0 else regressed).append(PromptChange(
            int(key), in_a.get("correct", 0), in_a.get("n", 0), in_b.get("correct", 0), in_b.get("n", 0), change,
            right_a, right_b))

    improved_total, regressed_total = len(improved), len(regressed)
    improved, regressed = _biggest_changes(improved, listed), _biggest_changes(regressed, listed)
    _add_texts(improved + regressed)
    counts = [
        ("improved", improved_total), ("regressed", regressed_total), ("unchanged", unchanged),
        ("only in A", len(results_a.keys() - results_b.keys())),
        ("only in B", len(results_b.keys() - results_a.keys())),
    ]
    return PromptComparison(counts, list(majority.items()), improved, regressed, improved_total, regressed_total)


def _accuracy(result: dict) -> float:
    n = result.get("n") or 0
    return result.get("correct", 0) / n if n else 0.0


def _biggest_changes(changes: list[PromptChange], listed: int) -> list[PromptChange]:
    # Prompt id breaks ties so the order is the same on every load.
    return sorted(changes, key=lambda c: (-abs(c.change), c.prompt_id))[:listed]


def _add_texts(changes: list[PromptChange]) -> None:
    prompts = Prompt.objects.only("question", "reference_answer").in_bulk([c.prompt_id for c in changes])
    for change in changes:
        prompt = prompts.get(change.prompt_id)
        if prompt is None:
            change.missing = True
        else:
            change.question, change.reference_answer = prompt.question, prompt.reference_answer
