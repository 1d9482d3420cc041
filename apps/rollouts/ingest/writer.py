"""The two-pass writer: validate every record, then land the rollouts under one job, all or nothing
(or, with partial, the good records), writing nothing twice on a retry."""

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.db import transaction

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.datasets.importing import CANCEL_CHECK_EVERY, MAX_ERRORS_SHOWN, ImportFileError
from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs.models import Job
from apps.rollouts.ingest.errors import IngestFileError, IngestValidationError
from apps.rollouts.ingest.mappers import FORMATS, MAPPERS, VERL_CORRECT_SCORE, VERL_INSTRUCTIONS, SourceOptions
from apps.rollouts.ingest.questions import template_affixes
from apps.rollouts.ingest.readers import count_source, first_columns, read_source, source_digest, trl_reward_weights
from apps.rollouts.models import RewardRecipe, Rollout
from apps.rollouts.rows import rollout_row
from apps.rollouts.scoring import rescore
from apps.rollouts.tokens import TOKENS_KEY, write_rollouts

MAX_REJECTED_KEPT = 1000  # IngestResult.rejected; rejected_count counts them all
MAX_IGNORED_FIELDS = 50
WRITE_CHUNK_ROWS = 5000
WRITE_CHUNK_CHARS = 64_000_000
LOOKUP_CHUNK = 2000


@dataclass
class IngestResult:
    job_id: int
    landed: int = 0  # rollouts written by this run
    duplicates: int = 0  # records repeating an earlier record's (prompt, step, sample_index) in the file
    rejected: list[dict] = field(default_factory=list)  # the first MAX_REJECTED_KEPT: {"line": ..., "errors": [...]}
    rejected_count: int = 0
    records: int = 0
    already_stored: int = 0  # rows an earlier attempt of the same job had written (a retry)
    prompts_created: int = 0
    ignored_fields: list[str] = field(default_factory=list)  # source fields with no Rollout column
    reward_columns: dict[str, float] = field(default_factory=dict)  # TRL: the reward functions and their weights
    source_sha256: str = ""
    correct_rule: str = ""  # how is_correct was decided
    already_ingested_by: int | None = None  # the earlier job that landed the same source: nothing landed now
    unscored_with_reference: int = 0  # landed without a correctness verdict though their prompt has a reference

    def as_dict(self) -> dict:
        return asdict(self)

    def job_summary(self) -> dict:
        """The job's result: figures, and the first rejected records as {line: errors} for the job page."""
        summary = {k: v for k, v in self.as_dict().items() if k not in {"job_id", "rejected", "ignored_fields"}}
        if self.rejected:
            summary["rejected"] = {r["line"]: "; ".join(r["errors"]) for r in self.rejected[:MAX_ERRORS_SHOWN]}
        if self.ignored_fields:
            summary["ignored_fields"] = ", ".join(self.ignored_fields)
        return summary


def parse_reward_columns(text: str) -> dict[str, float]:
    """ "accuracy, format=0.5" → {"accuracy": 1.0, "format": 0.5}: the reward functions' columns and weights."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise IngestFileError(f"reward columns: {weight.strip()!r} (for {name.strip()}) is not a number") from None
    return weights


def reward_weights_for(path: Path, named: str) -> tuple[dict[str, float] | None, str]:
    """The TRL log's reward columns and where they came from: as the user named them, else from the run's
    trainer_state.json; (None, "") when neither says."""
    if named.strip():
        return parse_reward_columns(named), "as named"
    weights = trl_reward_weights(path)
    return (weights, "from the run's trainer_state.json") if weights else (None, "")


def _reward_weights(path: Path, named: str, ctx) -> dict[str, float]:
    weights, source = reward_weights_for(path, named)
    if not weights:
        try:
            columns = ", ".join(first_columns(path)) or "none"
        except ImportFileError as exc:  # a file that cannot be read says so first
            raise IngestFileError(f"{exc}; nothing was ingested") from None
        raise IngestFileError(
            "TRL's completion logs do not say which columns are reward functions and which are log_extra values: "
            "name the reward columns (e.g. accuracy_reward=1, format_reward=0.5), or point at the run's output_dir, "
            f"whose trainer_state.json names them. Columns of the log: {columns}; nothing was ingested")
    ctx.log(f"reward functions {source}: " + ", ".join(f"{name} ×{w:g}" for name, w in weights.items())
            + "; every other column is kept as metadata")
    return weights


def correct_rule(fmt: str, how: SourceOptions) -> str:
    """How an ingest decides is_correct, in words, for the job's result."""
    if how.correct_recipe:
        return f"scored with {how.correct_recipe} (the source's own verdict is kept as source_correct)"
    if fmt == "verl":
        return f"the reward function's acc where logged, else score ≥ {how.correct_score:g}"
    if fmt == "trl":
        return "a reward column named like accuracy or correct, above 0"
    return "the record's is_correct, else a reward component named like accuracy or correct, above 0"


def _earlier_ingest(dataset: Dataset, digest: str, job: Job) -> int | None:
    """The id of an earlier succeeded ingest of the same source into `dataset` (a retry of `job` is not one)."""
    return (Job.objects.filter(kind="ingest_rollouts", status=Job.Status.SUCCEEDED, params__dataset=dataset.pk,
                               result__source_sha256=digest, result__already_ingested_by=None)
            .exclude(pk=job.pk).values_list("pk", flat=True).first())


class _PromptKeys:
    """The distinct prompts of the file: (question, reference answer) → content hash, and back."""

    def __init__(self):
        self.hashes: dict[tuple[str, str], str] = {}

    def key(self, sample: dict) -> str:
        pair = (sample["question"], sample["reference_answer"])
        digest = self.hashes.get(pair)
        if digest is None:
            digest = self.hashes[pair] = Prompt.hash_for(pair[0], pair[1], [])
        return digest


class _Sequencer:
    """Gives each sample its group and sample index, the same way on every run of the same file,
    and spots a repeated (prompt, step, sample_index)."""

    def __init__(self):
        self.next_index: dict[tuple[int, int], int] = defaultdict(int)
        self.group_of: dict[tuple[int, int], int] = {}
        self.groups_in_step: dict[int, int] = defaultdict(int)
        self.seen: set[tuple[int, int, int]] = set()

    def place(self, prompt_id: int, sample: dict) -> bool:
        """Fill in sample_index and group; False if the sample repeats one already placed."""
        slot = (prompt_id, sample["step"])
        if slot not in self.group_of:
            self.group_of[slot] = self.groups_in_step[sample["step"]]
            self.groups_in_step[sample["step"]] += 1
        if sample["group"] is None:
            sample["group"] = self.group_of[slot]
        if sample["sample_index"] is None:
            sample["sample_index"] = self.next_index[slot]
        self.next_index[slot] = max(self.next_index[slot], sample["sample_index"] + 1)
        key = (prompt_id, sample["step"], sample["sample_index"])
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _resolve_prompts(dataset: Dataset, keys: _PromptKeys, fmt: str) -> tuple[dict[str, int], int]:
    """Content hash → prompt id for every prompt of the file; creates the missing ones. (map, created)."""
    by_hash = {digest: pair for pair, digest in keys.hashes.items()}
    ids: dict[str, int] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[start:start + LOOKUP_CHUNK]
        ids.update(Prompt.objects.filter(dataset=dataset, content_hash__in=chunk).values_list("content_hash", "id"))
    # A log without reference answers (TRL, verl without gts) belongs to the prompt already in the
    # dataset with that question, answer and all, when there is exactly one.
    unanswered = {by_hash[h][0]: h for h in hashes if h not in ids and not by_hash[h][1]}
    questions = list(unanswered)
    for start in range(0, len(questions), LOOKUP_CHUNK):
        found = defaultdict(list)
        for question, pk in Prompt.objects.filter(
            dataset=dataset, question__in=questions[start:start + LOOKUP_CHUNK]
        ).values_list("question", "id"):
            found[question].append(pk)
        ids.update({unanswered[q]: pks[0] for q, pks in found.items() if len(pks) == 1})
    missing = [h for h in hashes if h not in ids]
    created = bulk_insert(Prompt, [
        {"dataset_id": dataset.pk, "question": by_hash[h][0], "reference_answer": by_hash[h][1], "tests": [],
         "metadata": {"source": f"ingest:{fmt}"}, "content_hash": h}
        for h in missing
    ])
    for start in range(0, len(missing), LOOKUP_CHUNK):
        chunk = missing[start:start + LOOKUP_CHUNK]
        ids.update(Prompt.objects.filter(dataset=dataset, content_hash__in=chunk).values_list("content_hash", "id"))
    return ids, created


def _resolve_models(names: set[str]) -> dict[str, int]:
    """Model name → ModelVersion id; a model R1 Studio has not seen is registered by its name."""
    ids = dict(ModelVersion.objects.filter(name__in=names).values_list("name", "id"))
    for name in sorted(names - ids.keys()):
        ids[name] = ModelVersion.objects.create(
            name=name, uri=name, stage=ModelVersion.Stage.OTHER, config={"source": "ingest"}
        ).pk
    return ids


ROW_FIELDS = ("step", "group", "sample_index", "prompt_text", "prompt_tokens", "completion_tokens", "finish_reason",
              "total_reward", "rewards", "advantage", "is_correct", "format_ok", "language_consistency", "metadata")


def _row(sample: dict, job_id: int, prompt_id: int, model_id: int | None) -> dict:
    # The source's verdict is also kept apart (source_correct): a later scoring job rewrites is_correct only.
    return rollout_row(job_id=job_id, prompt_id=prompt_id, completion=sample["completion"],
                       reasoning=sample["reasoning"], model_version_id=model_id, source_correct=sample["is_correct"],
                       **{name: sample[name] for name in ROW_FIELDS}) | {TOKENS_KEY: sample.get("tokens")}


def ingest_file(path, fmt: str, *, dataset: Dataset, ctx, partial: bool = False, model_name: str = "",
                instruction: str = "", correct_score: float = VERL_CORRECT_SCORE, force: bool = False,
                reward_columns: str = "", correct_recipe: int | None = None) -> IngestResult:
    """Validate every record of `path` (format `fmt`), then write its rollouts under `ctx.job`, all or nothing.

    The body of the ingest_rollouts job, whoever launched it (the upload page, the API, the command line):
    `ctx` is its JobContext (progress, log, cancel). Raises IngestFileError for a file that cannot be read,
    IngestValidationError for bad records unless `partial`. A source that an earlier job already landed in
    `dataset` lands nothing and the result names that job, unless `force`. With `correct_recipe` (a
    RewardRecipe id), is_correct is decided by scoring the landed rollouts with it; their rewards stay the
    source's, and source_correct keeps what the source's own score said.
    """
    path, job = Path(path), ctx.job
    if fmt not in MAPPERS:
        raise IngestFileError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    mapper = MAPPERS[fmt]
    recipe = RewardRecipe.objects.get(pk=correct_recipe) if correct_recipe else None
    how = SourceOptions(affixes=tuple(template_affixes()), instructions=(*VERL_INSTRUCTIONS, instruction.strip()),
                        correct_score=correct_score, correct_recipe=str(recipe or ""),
                        reward_weights=_reward_weights(path, reward_columns, ctx) if fmt == "trl" else None)
    # Two passes over the records, validate then write, each counted from 0 to the number of records.
    ctx.report(stage="validating")
    ctx.progress(0, count_source(path, fmt))
    ctx.log(f"validating {path.name} ({fmt}) for dataset {dataset.name}")

    result = IngestResult(job_id=job.pk, source_sha256=source_digest(path, fmt),
                          reward_columns=how.reward_weights or {}, correct_rule=correct_rule(fmt, how))
    earlier = None if force else _earlier_ingest(dataset, result.source_sha256, job)
    if earlier is not None:
        result.already_ingested_by = earlier
        ctx.log(f"job #{earlier} already landed this source in {dataset.name}: nothing landed (force lands it again)")
        return result

    # Pass 1: validate everything; keep only the distinct prompts and models, not the rows.
    keys, models, ignored = _PromptKeys(), set(), set()
    errors: list[str] = []
    for where, record in read_source(path, fmt):
        result.records += 1
        if isinstance(record, str):  # a line the reader could not parse
            sample, problems = None, [record]
        else:
            sample, problems = mapper(record, how, ignored)
        if problems:
            result.rejected_count += 1
            if len(result.rejected) < MAX_REJECTED_KEPT:
                result.rejected.append({"line": where, "errors": problems})
            errors.extend(f"{where}: {p}" for p in problems[: max(0, MAX_ERRORS_SHOWN - len(errors))])
        else:
            keys.key(sample)
            models.add(sample["model"] or model_name)
        if result.records % CANCEL_CHECK_EVERY == 0:
            ctx.progress(result.records)
            ctx.check_cancelled()
    if not result.records:
        raise IngestFileError(f"{path.name} holds no records; nothing was ingested")
    if result.rejected_count and not partial:
        raise IngestValidationError(errors, result.rejected_count)
    result.ignored_fields = sorted(ignored)[:MAX_IGNORED_FIELDS]
    if result.rejected_count:
        ctx.log(f"{result.rejected_count} of {result.records} records rejected; landing the others")
    ctx.report(stage="writing")
    ctx.progress(0, result.records)
    ctx.check_cancelled()

    # Pass 2: in one transaction, find or create the prompts and models, then write the rows in chunks.
    with transaction.atomic():
        prompt_ids, result.prompts_created = _resolve_prompts(dataset, keys, fmt)
        model_ids = _resolve_models(models - {""})
        ctx.log(f"{len(prompt_ids)} prompts ({result.prompts_created} new); writing rollouts")
        sequencer, rows, chars, stored = _Sequencer(), [], 0, 0
        for number, (_, record) in enumerate(read_source(path, fmt), start=1):
            if not isinstance(record, str):
                sample, problems = mapper(record, how, set())
                if not problems:
                    prompt_id = prompt_ids[keys.key(sample)]
                    if sequencer.place(prompt_id, sample):
                        rows.append(_row(sample, job.pk, prompt_id, model_ids.get(sample["model"] or model_name)))
                        chars += len(sample["completion"]) + len(sample["prompt_text"])
                    else:
                        result.duplicates += 1
            if len(rows) >= WRITE_CHUNK_ROWS or chars >= WRITE_CHUNK_CHARS:
                result.landed += write_rollouts(rows)
                stored, rows, chars = stored + len(rows), [], 0
            if number % CANCEL_CHECK_EVERY == 0:
                ctx.progress(number)
                ctx.check_cancelled()
        if rows:
            result.landed += write_rollouts(rows)
            stored += len(rows)
        result.already_stored = stored - result.landed
        audit.record(job.created_by, "rollouts.ingest", job, via="job", landed=result.landed,
                     rejected_count=result.rejected_count, duplicates=result.duplicates, format=fmt, file=path.name,
                     dataset=dataset.name)
    ctx.progress(result.records, result.records)
    if recipe is not None:
        landed = Rollout.objects.filter(job=job)
        ctx.report(stage=f"deciding correctness with {recipe}")
        ctx.progress(0, landed.count())
        rescore(landed, recipe, ctx, only_correctness=True)
    result.unscored_with_reference = (Rollout.objects.filter(job=job, is_correct__isnull=True)
                                      .exclude(prompt__reference_answer="").count())
    ctx.log(f"landed {result.landed} rollouts; {result.duplicates} duplicates in the file, "
            f"{result.already_stored} already stored, {result.rejected_count} rejected")
    return result
