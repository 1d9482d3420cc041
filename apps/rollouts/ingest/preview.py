"""What an ingest would do, shown before anything lands: what each source column becomes, and the first
records as they would be stored. The upload page, the command line and the API show the same preview."""

from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from apps.datasets.importing import ImportFileError
from apps.rollouts.ingest.errors import IngestFileError
from apps.rollouts.ingest.mappers import MAPPERS, VERL_CORRECT_SCORE, VERL_INSTRUCTIONS, SourceOptions, column_role
from apps.rollouts.ingest.questions import template_affixes
from apps.rollouts.ingest.readers import count_source, read_source, source_files
from apps.rollouts.ingest.writer import correct_rule, reward_weights_for

SCANNED_RECORDS = 200  # the columns are collected from this many records (a column may start late)
SHOWN_RECORDS = 3
SHOWN_CHARS = 300

NOTES = {
    "trl": "TRL logs only the last generation batch of each logging step (log_completions): the run lands as a "
           "sample of its rollouts, not every one.",
    "verl": "verl dumps carry no group id: groups are rebuilt from the step and identical prompts.",
}


@dataclass
class ColumnRole:
    column: str
    becomes: str
    example: str


@dataclass
class IngestPreview:
    format: str
    files: int
    records: int | None  # None where the files cannot be counted cheaply
    columns: list[ColumnRole] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # the first records as they would land
    problems: list[str] = field(default_factory=list)  # bad records among the scanned ones, or what is missing
    correct_rule: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def metadata_columns(self) -> list[str]:
        """Source fields with no column of ours: kept in each rollout's metadata."""
        return [c.column for c in self.columns if c.becomes == "metadata" or c.becomes.endswith("; metadata")]

    def as_dict(self) -> dict:
        return {**asdict(self), "metadata_columns": self.metadata_columns}

    def text(self) -> str:
        """The preview as the command line prints it."""
        records = "?" if self.records is None else f"{self.records:,}"
        width = max((len(c.column) for c in self.columns), default=6)
        lines = [f"{self.format}: {records} records in {self.files} file(s)", "", "column mapping:"]
        lines += [f"  {c.column:<{width}}  → {c.becomes}" for c in self.columns]
        lines += ["", f"is_correct: {self.correct_rule}"] + [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _short(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def preview_source(path, fmt: str, *, instruction: str = "", correct_score: float = VERL_CORRECT_SCORE,
                   reward_columns: str = "", correct_recipe: str = "") -> IngestPreview:
    """The column mapping and first records of `path` read as `fmt`, writing nothing. A file that cannot be
    read raises IngestFileError, as the ingest itself would."""
    path = Path(path)
    weights, _ = reward_weights_for(path, reward_columns) if fmt == "trl" else (None, "")
    how = SourceOptions(affixes=tuple(template_affixes()), instructions=(*VERL_INSTRUCTIONS, instruction.strip()),
                        correct_score=correct_score, reward_weights=weights, correct_recipe=correct_recipe)
    preview = IngestPreview(format=fmt, files=len(source_files(path, fmt)), records=count_source(path, fmt),
                            correct_rule=correct_rule(fmt, how), notes=[NOTES[fmt]] if fmt in NOTES else [])
    examples: dict[str, object] = {}  # column → its first non-null value, in order of appearance
    try:
        for where, record in islice(read_source(path, fmt), SCANNED_RECORDS):
            if isinstance(record, str):
                preview.problems.append(f"{where}: {record}")
                continue
            for column, value in record.items():
                if examples.get(column) is None:
                    examples[column] = value
            if fmt == "trl" and weights is None:
                continue  # which columns are rewards is not known yet: nothing can be mapped
            sample, problems = MAPPERS[fmt](record, how, set())
            if problems:
                preview.problems.extend(f"{where}: {p}" for p in problems)
            elif len(preview.samples) < SHOWN_RECORDS:
                preview.samples.append(_shown(sample))
    except ImportFileError as exc:
        raise IngestFileError(str(exc)) from None
    if fmt == "trl" and weights is None:
        preview.problems.insert(0, "which columns are reward functions is not known: name the reward columns, "
                                   "or point at the run's output_dir (its trainer_state.json names them)")
    if fmt == "trl" and weights:
        missing = sorted(set(weights) - examples.keys())
        if missing:
            preview.problems.insert(0, f"reward columns not in the log: {', '.join(missing)}")
    preview.columns = [ColumnRole(column, column_role(fmt, column, value, how), _short(value))
                       for column, value in examples.items()]
    return preview


def _shown(sample: dict) -> dict:
    """A mapped record as the preview shows it: the fields people check, long texts cut."""
    cut = {key: (sample[key][:SHOWN_CHARS] + ("…" if len(sample[key]) > SHOWN_CHARS else "")) if sample[key] else ""
           for key in ("question", "completion", "reference_answer")}
    return {**cut, "step": sample["step"], "total_reward": sample["total_reward"], "is_correct": sample["is_correct"],
            "rewards": {name: spec["value"] * spec["weight"] for name, spec in sample["rewards"].items()},
            "metadata": sample["metadata"]}
