"""The evaluation pages: every checkpoint's scores side by side per benchmark, and two evaluations
of one benchmark compared prompt by prompt (which prompts a checkpoint fixed or broke)."""

from dataclasses import dataclass, field

from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.training.models import Evaluation

# The fixed and broken lists show the biggest changes first; past this many rows a page is unreadable anyway.
LISTED_PROMPTS = 500


class ComparisonError(Exception):
    """A comparison the page cannot show; the message says why and `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


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
    best_pass1: bool = False
    best_cons: bool = False

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
    """Three queries: the evaluations (without their per-prompt results), the model versions, the benchmark names."""
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
    rows = []
    for model, depth in lineage_order(models):
        if model.pk not in evaluated:
            continue
        row = CheckpointRow(model, depth)
        for benchmark in benchmarks:
            evaluation = latest.get((model.pk, benchmark.dataset.pk))
            row.cells.append(_cell(evaluation, runs[(model.pk, benchmark.dataset.pk)]) if evaluation else None)
        rows.append(row)
    _mark_best(rows, len(benchmarks))

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


def _cell(evaluation: Evaluation, runs: int) -> Cell:
    cons_name, cons = cons_metric(evaluation.metrics, evaluation.k)
    return Cell(evaluation, runs, _number(evaluation.metrics.get("pass@1")), _number(cons), cons_name)


def _number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mark_best(rows: list[CheckpointRow], benchmarks: int) -> None:
    """Highlight each column's best value (every tie); a column with one value has nothing to beat."""
    for column in range(benchmarks):
        cells = [row.cells[column] for row in rows if row.cells[column] is not None]
        for metric in ("pass1", "cons"):
            values = [getattr(c, metric) for c in cells if getattr(c, metric) is not None]
            if len(values) < 2:
                continue
            best = max(values)
            for c in cells:
                if getattr(c, metric) == best:
                    setattr(c, f"best_{metric}", True)


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

    @property
    def score(self) -> bool:
        """pass@k and cons@k are better higher; counts such as `prompts` are neither better nor worse."""
        return "@" in self.name


@dataclass
class PromptChange:
    prompt_id: int
    correct_a: int
    n_a: int
    correct_b: int
    n_b: int
    change: float  # accuracy in B − accuracy in A
    question: str = ""
    reference_answer: str = ""
    missing: bool = False  # the prompt was deleted since the evaluations ran


@dataclass
class PromptComparison:
    counts: list[tuple[str, int]]  # (group, prompts) in display order
    fixed: list[PromptChange]  # majority wrong in A, right in B; biggest change first
    broken: list[PromptChange]  # majority right in A, wrong in B
    fixed_total: int
    broken_total: int

    @property
    def sections(self) -> list[dict]:
        """The two lists the page shows, in one shape so the template writes the table once."""
        return [
            {"key": "fixed", "title": "Fixed: wrong in A, right in B", "changes": self.fixed,
             "total": self.fixed_total},
            {"key": "broken", "title": "Broken: right in A, wrong in B", "changes": self.broken,
             "total": self.broken_total},
        ]


def metric_rows(a: Evaluation, b: Evaluation) -> list[MetricRow]:
    rows = []
    for name in sorted({*a.metrics, *b.metrics}, key=_metric_order):
        value_a, value_b = a.metrics.get(name), b.metrics.get(name)
        both = _number(value_a) is not None and _number(value_b) is not None
        rows.append(MetricRow(name, value_a, value_b, value_b - value_a if both else None))
    return rows


def _metric_order(name: str) -> tuple:
    """Counts first, then pass@k by k, then cons@k: jsonb does not keep the order the job wrote them in."""
    family, _, k = name.partition("@")
    rank = {"pass": 1, "cons": 2}.get(family, 0) if k else 0
    return (rank, int(k) if k.isdigit() else 0, name)


def compare_prompts(a: Evaluation, b: Evaluation, listed: int = LISTED_PROMPTS) -> PromptComparison:
    """Group the prompts by their majority verdicts in A and B; plain dict work, one query for the listed texts."""
    results_a, results_b = a.per_prompt or {}, b.per_prompt or {}
    groups = {"fixed": [], "broken": [], "both right": 0, "both wrong": 0}
    for key in results_a.keys() & results_b.keys():
        in_a, in_b = results_a[key], results_b[key]
        right_a, right_b = bool(in_a.get("majority_correct")), bool(in_b.get("majority_correct"))
        if right_a == right_b:
            groups["both right" if right_a else "both wrong"] += 1
            continue
        change = PromptChange(int(key), in_a.get("correct", 0), in_a.get("n", 0), in_b.get("correct", 0),
                              in_b.get("n", 0), _accuracy(in_b) - _accuracy(in_a))
        groups["fixed" if right_b else "broken"].append(change)

    fixed, broken = (_biggest_changes(groups[name], listed) for name in ("fixed", "broken"))
    _add_texts(fixed + broken)
    counts = [
        ("fixed", len(groups["fixed"])), ("broken", len(groups["broken"])),
        ("both right", groups["both right"]), ("both wrong", groups["both wrong"]),
        ("only in A", len(results_a.keys() - results_b.keys())),
        ("only in B", len(results_b.keys() - results_a.keys())),
    ]
    return PromptComparison(counts, fixed, broken, len(groups["fixed"]), len(groups["broken"]))


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
