"""Request and response shapes: they are the OpenAPI document, so every field says what it is."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from ninja import Field, Schema
from pydantic import AfterValidator, StringConstraints

from apps.curation.models import Annotation
from apps.curation.review import MAX_TAG_CHARS, MAX_TAGS
from apps.datasets.export import FORMATS as EXPORT_FORMATS
from apps.jobs.models import Job
from apps.rollouts.browse import SORTS, VERDICTS
from apps.rollouts.ingest import FORMATS as INGEST_FORMATS
from apps.rollouts.models import Rollout
from apps.rollouts.score_batch import MAX_COMPLETION_CHARS, MAX_TESTS, MAX_TEXT_CHARS

# Postgres text cannot hold NUL, so such input is refused up front with the field named, never sent to the database.
NO_NUL = r"^[^\x00]*$"
PG_INT = 2**31 - 1  # the largest value a PositiveIntegerField column holds
PG_BIGINT = 2**63 - 1  # the largest row id


def _encodable(value: str) -> str:
    # A lone surrogate (legal in JSON "\ud800", not in UTF-8) would fail only when the database encodes it.
    value.encode("utf-8")
    return value


def unstorable(value) -> bool:
    """True if a JSON value holds text Postgres cannot store: U+0000, or a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return "\x00" in value
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


Text = Annotated[str, StringConstraints(pattern=NO_NUL), AfterValidator(_encodable)]
Slug = Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]+$", min_length=1, max_length=100)]
RowId = Annotated[int, Field(ge=1, le=PG_BIGINT)]
Count = Annotated[int, Field(ge=0, le=PG_INT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
YesNo = Literal["yes", "no"]
Limit = Annotated[int, Field(ge=1, le=500, description="Rows per page (1-500)")]


class ErrorOut(Schema):
    detail: Any = Field(description="What went wrong: a message, or for 422 a list of {loc, msg, type} naming "
                                    "each bad field")


class PermissionErrorOut(ErrorOut):
    permission: str = Field(description="The permission the caller lacks, app_label.codename")


class Page(Schema):
    """What every list returns beside its items."""

    next: str | None = Field(description="Pass as ?after= for the next page; null on the last page")
    total: int = Field(description="Rows in the whole list (every page, not only those after the cursor)")
    total_is_estimate: bool = Field(description="True when `total` is Postgres' planner estimate: the exact count "
                                                "took too long (or the list is a whole large table)")


class PageQuery(Schema):
    after: Text | None = Field(None, max_length=200, description="The `next` cursor of the previous page")
    limit: Limit = 50


# ----- datasets


class DatasetOut(Schema):
    id: int
    name: str
    description: str
    created_by: str | None = Field(description="Username")
    created_at: datetime

    @staticmethod
    def resolve_created_by(obj):
        return obj.created_by.username if obj.created_by_id else None


class DatasetDetailOut(DatasetOut):
    prompt_count: int
    example_count: int
    version_count: int


class DatasetPage(Page):
    items: list[DatasetOut]


class DatasetIn(Schema):
    name: Slug = Field(description="Letters, digits, '-' and '_'; unique")
    description: Text = Field("", max_length=10_000)


# ----- versions


class VersionOut(Schema):
    id: int
    dataset: str = Field(description="Dataset name")
    number: int
    content_hash: str = Field(description="sha256 over the examples' content hashes, in order")
    example_count: int
    note: str
    provenance: dict = Field(description="Where the examples came from: sources, proportions, seed, producing job")
    created_by: str | None
    created_at: datetime

    @staticmethod
    def resolve_dataset(obj):
        return obj.dataset.name

    @staticmethod
    def resolve_created_by(obj):
        return obj.created_by.username if obj.created_by_id else None


class VersionPage(Page):
    items: list[VersionOut]


class FreezeIn(Schema):
    example_ids: list[RowId] | None = Field(
        None, max_length=2_000_000, description="Examples of this dataset, in the order the version keeps them"
    )
    all_examples: bool = Field(False, description="Freeze every example of the dataset (in id order) instead")
    note: Text = Field("", max_length=10_000)


class ComposePart(Schema):
    version: RowId = Field(description="A source version's id (any dataset)")
    count: Annotated[int, Field(ge=1, le=PG_INT)] = Field(description="How many of its examples to take")


class ComposeIn(Schema):
    parts: list[ComposePart] = Field(min_length=1, max_length=100)
    seed: Annotated[int, Field(ge=0, le=PG_INT)] = Field(0, description="Same seed, same sources: same version")
    note: Text = Field("", max_length=10_000)


class ExampleOut(Schema):
    id: int
    content_hash: str
    messages: list
    source: str
    provenance: dict


class DiffOut(Schema):
    a: int = Field(description="The version compared from")
    b: int = Field(description="The version compared to")
    added: int = Field(description="Examples in b and not in a (by content hash)")
    removed: int = Field(description="Examples in a and not in b")
    kept: int = Field(description="Examples in both")
    added_samples: list[ExampleOut]
    removed_samples: list[ExampleOut]


class ExportQuery(Schema):
    format: Literal[tuple(EXPORT_FORMATS)] = Field("messages", description=" | ".join(EXPORT_FORMATS))


# ----- prompts


class PromptOut(Schema):
    id: int
    dataset: str
    question: str
    reference_answer: str
    tests: list
    domain: str
    language: str
    reasoning: bool = Field(description="False: a non-reasoning prompt (writing, facts, translation, ...)")
    metadata: dict
    content_hash: str
    created_at: datetime

    @staticmethod
    def resolve_dataset(obj):
        return obj.dataset.name


class PromptPage(Page):
    items: list[PromptOut]


class PromptQuery(PageQuery):
    dataset: Slug | None = Field(None, description="Only this dataset's prompts (by name)")
    q: Text | None = Field(None, max_length=200, description="Search the question (web-search syntax)")
    reasoning: bool | None = Field(None, description="Only reasoning (true) or non-reasoning (false) prompts")
    domain: Text | None = Field(None, max_length=32, description="Only prompts of this domain")


class PromptMarkIn(Schema):
    reasoning: bool = Field(description="true: a reasoning prompt; false: non-reasoning")


class PromptBulkMarkIn(Schema):
    dataset: Slug = Field(description="The dataset whose prompts are marked (by name)")
    reasoning: bool = Field(description="true: reasoning; false: non-reasoning")
    domain: Text | None = Field(None, max_length=32, description="Only prompts of this domain")
    q: Text | None = Field(None, max_length=200, description="Only prompts whose question contains this text")
    ids: list[RowId] | None = Field(None, max_length=10_000, description="Only these prompts")


class PromptMarkOut(Schema):
    matched: int
    changed: int


# ----- rollouts


class RolloutQuery(PageQuery):
    """The rollout browser's filters (apps.rollouts.browse.RolloutFilterForm), as query parameters."""

    q: Text | None = Field(None, max_length=200, description="Search question and completion")
    dataset: Slug | None = Field(None, description="Dataset name")
    model: RowId | None = Field(None, description="Model version id")
    job: RowId | None = None
    prompt: RowId | None = None
    step_min: Count | None = None
    step_max: Count | None = None
    correct: YesNo | None = None
    format_ok: YesNo | None = None
    reward_min: Finite | None = None
    reward_max: Finite | None = None
    component: Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]+$", max_length=64)] | None = Field(
        None, description="A reward component, e.g. math_accuracy; component_min/max apply to it"
    )
    component_min: Finite | None = None
    component_max: Finite | None = None
    language_min: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="Language consistency ≥")
    length_min: Count | None = Field(None, description="Completion length ≥ (characters)")
    length_max: Count | None = None
    finish: Literal[tuple(Rollout.FinishReason.values)] | None = None
    reflection: YesNo | None = None
    annotated: YesNo | None = None
    verdicts: Literal[tuple(name for name, _ in VERDICTS if name)] | None = Field(
        None, description="The source's own correctness label against ours: disagree, theirs_right (source says "
                          "right, our scorer wrong) or theirs_wrong"
    )
    meta_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] | None = Field(
        None, description="A metadata field the source carried (a log_extra column, ...): rollouts that have it"
    )
    meta_value: Text | None = Field(None, max_length=200, description="...whose value, as text, is this")
    entropy_min: Annotated[float, Field(ge=0)] | None = Field(
        None, description="The token lens: rollouts with a token trace whose highest token entropy (nats) is ≥ this")
    entropy_max: Annotated[float, Field(ge=0)] | None = Field(None, description="...and ≤ this")
    mean_logprob_max: Annotated[float, Field(le=0)] | None = Field(
        None, description="Rollouts whose mean token log-probability is ≤ this")
    min_logprob_max: Annotated[float, Field(le=0)] | None = Field(
        None, description="Rollouts with a token whose log-probability is ≤ this (a near-random token)")
    sort: Literal[tuple(name for name in SORTS if name != "newest")] | None = Field(
        None, description="Default newest first"
    )


class RolloutOut(Schema):
    id: int
    job: int
    prompt: int
    model_version: int | None
    step: int
    group: int
    sample_index: int
    prompt_text: str
    completion: str
    reasoning: str
    answer: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str
    rewards: dict = Field(description="{component: {value, weight, details}}")
    total_reward: float | None
    advantage: float | None
    is_correct: bool | None = Field(description="Our scorer's verdict (or the source's, until we score it)")
    source_correct: bool | None = Field(description="The source's own verdict, kept as it came")
    metadata: dict = Field(description="What the source carried beyond these fields")
    format_ok: bool | None
    language_consistency: float | None
    length_chars: int
    has_reflection: bool
    shape_flags: int
    created_at: datetime

    @staticmethod
    def resolve_job(obj):
        return obj.job_id

    @staticmethod
    def resolve_prompt(obj):
        return obj.prompt_id

    @staticmethod
    def resolve_model_version(obj):
        return obj.model_version_id


class RolloutPage(Page):
    items: list[RolloutOut]


# ----- reward recipes


class RecipeComponentOut(Schema):
    name: str = Field(description="A reward component (workers.rewards.recipes.COMPONENTS)")
    weight: float
    params: dict
    domains: list[str] = Field(description="The prompt domains it applies to; empty: every domain")


class RecipeOut(Schema):
    id: int
    name: str = Field(description="Name a recipe by this (the latest version is used unless one is chosen)")
    version: int
    latest: bool = Field(description="Whether this is the newest version of its name")
    description: str
    content_hash: str
    components: list[RecipeComponentOut]
    created_at: datetime

    @staticmethod
    def resolve_components(obj):
        return [{"domains": [], "params": {}, **component} for component in obj.spec["components"]]

    @staticmethod
    def resolve_latest(obj):
        return obj.version == obj.newest_version


class RecipePage(Page):
    items: list[RecipeOut]


class RecipeQuery(PageQuery):
    name: Slug | None = Field(None, description="Only the versions of this recipe")


class JudgePromptOut(Schema):
    id: int
    name: str = Field(description="Name it in an llm_judge component's params.prompt")
    version: int
    latest: bool = Field(description="Whether this is the newest version of its name (used when params name no "
                                     "prompt_version)")
    text: str
    description: str
    content_hash: str
    created_at: datetime

    @staticmethod
    def resolve_latest(obj):
        return obj.version == obj.newest_version


class JudgePromptPage(Page):
    items: list[JudgePromptOut]


class JudgePromptIn(Schema):
    name: Slug
    text: Text = Field(min_length=1, max_length=20_000,
                       description="{prompt}, {reference}, {completion} (the whole completion) and {answer} (its "
                                   "final answer) are filled in per sample; it must ask for a final "
                                   "'VERDICT: correct|incorrect' line and may ask for a 'REASON:' line")
    description: Text = Field("", max_length=2000)


class IngestForm(Schema):
    dataset: Slug = Field(description="The dataset whose prompts the rollouts answer (matched or created there)")
    format: Literal[("", *INGEST_FORMATS)] = Field("", description="Empty: detect from the file")
    partial: bool = Field(False, description="Land the good records and return the rejected ones")
    model_name: Text = Field("", max_length=200, description="The model that produced them (registered if new)")
    instruction: Text = Field("", max_length=2000, description="Text appended to each question by your data "
                              "preparation, removed before matching (verl's GSM8K and MATH instructions always are)")
    correct_score: float = Field(1.0, description="verl without an 'acc': a score of at least this counts as right")
    force: bool = Field(False, description="Land the source again even if an earlier ingest into the dataset did")
    reward_columns: Text = Field("", max_length=2000, description="TRL: the reward function columns with weights "
                                 "(accuracy_reward=1, format_reward=0.5); other columns are kept as metadata")
    correct_recipe: Text = Field("", max_length=100, description="A recipe name (GET /recipes): is_correct is "
                                 "decided by scoring each rollout with it; the source's rewards and verdict stay")
    preview: bool = Field(False, description="Return the column mapping and first records (200); land nothing")


class ColumnRoleOut(Schema):
    column: str
    becomes: str = Field(description="What the column becomes: a field of ours, a reward component with its "
                                     "weight, or metadata")
    example: str = Field(description="Its first value, shortened")


class IngestPreviewOut(Schema):
    format: str
    files: int
    records: int | None
    columns: list[ColumnRoleOut]
    metadata_columns: list[str] = Field(description="Source fields with no column of ours, kept as metadata")
    samples: list[dict] = Field(description="The first records as they would land")
    problems: list[str] = Field(description="Bad records among the first ones, or what must be named first")
    correct_rule: str
    notes: list[str]


class IngestRefusedOut(ErrorOut):
    """A 413 (file over MAX_UPLOAD_MB)."""


# ----- jobs


class JobOut(Schema):
    id: int
    kind: str
    label: str
    params: dict
    queue: str
    status: str
    progress_done: int
    progress_total: int | None
    cancel_requested: bool
    attempts: int
    error: str
    result: dict
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @staticmethod
    def resolve_created_by(obj):
        return obj.created_by.username if obj.created_by_id else None


class IngestAcceptedOut(JobOut):
    """A 202: the ingest job, and what its file's columns become."""

    preview: IngestPreviewOut
    ignored_fields: list[str] = Field(description="Source fields with no column of ours: kept in each rollout's "
                                                  "metadata (the command line reports the same)")


class JobPage(Page):
    items: list[JobOut]


class JobQuery(PageQuery):
    status: Literal[tuple(Job.Status.values)] | None = None
    kind: Slug | None = None


# ----- scoring


class ScoreItemIn(Schema):
    completion: Text = Field(max_length=MAX_COMPLETION_CHARS, description="The model's output, as generated")
    reference: Text = Field("", max_length=MAX_TEXT_CHARS, description="The reference answer (math)")
    prompt: Text = Field("", max_length=MAX_TEXT_CHARS, description="The question (some components read it)")
    tests: list[dict] = Field(default_factory=list, max_length=MAX_TESTS,
                              description="Test cases for code_accuracy: {\"input\", \"output\"} (stdin and stdout) "
                                          "or {\"fn\", \"args\", \"kwargs\", \"expected\"} (workers.rewards.code)")
    domain: Annotated[Text, StringConstraints(max_length=32)] = Field(
        "math", description="Components with `domains` apply only to theirs")
    language: Annotated[Text, StringConstraints(max_length=16)] = Field(
        "en", description="The language the reasoning should be in")
    finish_reason: Literal[tuple(Rollout.FinishReason.values)] = Field(
        "stop", description="`length` when generation hit the token cap")


class ScoreIn(Schema):
    recipe: Slug = Field(description="A reward recipe's name (GET /recipes)")
    version: Annotated[int, Field(ge=1, le=PG_INT)] | None = Field(
        None, description="Its version; default the version the name stands for (the newest)")
    items: list[ScoreItemIn] = Field(min_length=1, max_length=settings.SCORE_MAX_ITEMS)


class ComponentScoreOut(Schema):
    value: float
    weight: float | None = Field(None, description="Absent for the `error` entry of an item that failed")
    details: dict = Field(description="What the component extracted and why it scored so")


class ItemScoreOut(Schema):
    total_reward: float = Field(description="The weighted sum of the components")
    rewards: dict[str, ComponentScoreOut] = Field(description="{component: {value, weight, details}}, as a "
                                                              "rollout's `rewards`")
    is_correct: bool | None = Field(description="The first accuracy component's verdict (null: none applied)")
    format_ok: bool | None = Field(description="Whether the format component gave full marks (null: none)")
    error: str | None = Field(None, description="Why scoring failed (a timeout, say): the item then scores 0")


class ScoreOut(Schema):
    recipe: str
    version: int
    items: list[ItemScoreOut] = Field(description="One score per item, in the order sent")


# ----- annotations


class AnnotationOut(Schema):
    id: int
    item: int
    queue: int
    rollout: int | None
    annotator: str
    verdict: str
    readability: int | None
    edited_reasoning: str
    edited_summary: str
    tags: list
    notes: str = Field(description="The annotator's private notes: empty unless you are the annotator, a reviewer "
                                   "or an admin")
    version: int = Field(description="Send back as expected_version when changing the annotation")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_item(obj):
        return obj.item_id

    @staticmethod
    def resolve_queue(obj):
        return obj.item.queue_id

    @staticmethod
    def resolve_notes(obj, context):
        return obj.notes_for(context["request"].user)

    @staticmethod
    def resolve_rollout(obj):
        return obj.item.rollout_id

    @staticmethod
    def resolve_annotator(obj):
        return obj.annotator.username


class AnnotationPage(Page):
    items: list[AnnotationOut]


class AnnotationQuery(PageQuery):
    queue: RowId | None = Field(None, description="Review queue id")
    annotator: Annotated[str, StringConstraints(pattern=r"^[\w.@+-]+$", max_length=150)] | None = Field(
        None, description="Username"
    )


class AnnotationPatch(Schema):
    expected_version: Annotated[int, Field(ge=1, le=PG_INT)] = Field(
        description="The version you read; a later save by someone else makes this a 409 conflict"
    )
    verdict: Literal[tuple(Annotation.Verdict.values)] | None = None
    readability: Annotated[int, Field(ge=1, le=5)] | None = None
    edited_reasoning: Text | None = Field(None, max_length=2_000_000)
    edited_summary: Text | None = Field(None, max_length=200_000)
    tags: list[Annotated[Text, StringConstraints(max_length=MAX_TAG_CHARS)]] | None = Field(None, max_length=MAX_TAGS)
    notes: Text | None = Field(None, max_length=10_000)
