"""The rollout browser's filters: a GET form (the URL is the shareable state) turned into one queryset.

Every filter is optional. Search uses the GIN full-text indexes on Postgres
(question through the prompt, completion on the rollout) and LIKE on SQLite.
"""

from django import forms
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Left

from apps.core import search
from apps.core.pagination import keyset_page
from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.rollouts.models import Rollout, reward_component_value

PER_PAGE = 50
# A search matching more prompts than this is still right, only slower (a subquery instead of an id list).
MAX_PROMPT_IDS = 1000

LIST_COLUMNS = ["job_id", "prompt_id", "model_version_id", "step", "group", "sample_index", "total_reward",
                "is_correct", "format_ok", "language_consistency", "length_chars", "completion_tokens",
                "finish_reason", "has_reflection", "shape_flags", "created_at"]
SORTS = {
    "newest": (None, True),
    "oldest": (None, False),
    "reward": ("total_reward", True),
    "reward_asc": ("total_reward", False),
    "length": ("length_chars", True),
    "length_asc": ("length_chars", False),
    # The token lens (RolloutTokens' summary columns): rollouts without a stored trace are left out.
    "max_entropy": ("token_max_entropy", True),
    "mean_logprob_asc": ("token_mean_logprob", False),
    "min_logprob_asc": ("token_min_logprob", False),
}
TOKEN_SORT_COLUMNS = {"token_max_entropy": "tokens__max_entropy", "token_mean_logprob": "tokens__mean_logprob",
                      "token_min_logprob": "tokens__min_logprob"}
SORT_CHOICES = [
    ("", "newest"), ("oldest", "oldest"), ("reward", "reward, high first"), ("reward_asc", "reward, low first"),
    ("length", "longest"), ("length_asc", "shortest"), ("max_entropy", "max token entropy, high first"),
    ("mean_logprob_asc", "mean token log-prob, low first"), ("min_logprob_asc", "lowest-probability token first"),
]
YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]
# The source's own label (source_correct) against our scorer's verdict (is_correct): where they part is
# where a reward function (theirs or ours) is most likely wrong.
VERDICTS = [("", "any"), ("disagree", "they disagree"), ("theirs_right", "source says right, ours wrong"),
            ("theirs_wrong", "source says wrong, ours right")]
THEIRS_RIGHT, THEIRS_WRONG = Q(source_correct=True, is_correct=False), Q(source_correct=False, is_correct=True)
VERDICT_FILTERS = {"disagree": THEIRS_RIGHT | THEIRS_WRONG, "theirs_right": THEIRS_RIGHT, "theirs_wrong": THEIRS_WRONG}


class RolloutFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search", help_text="question and completion")
    dataset = forms.ModelChoiceField(Dataset.objects.order_by("name"), required=False, to_field_name="name")
    model = forms.ModelChoiceField(ModelVersion.objects.order_by("-pk"), required=False, label="Model version")
    job = forms.IntegerField(required=False, min_value=1)
    prompt = forms.IntegerField(required=False, min_value=1)
    step_min = forms.IntegerField(required=False, min_value=0)
    step_max = forms.IntegerField(required=False, min_value=0)
    correct = forms.ChoiceField(choices=YES_NO, required=False)
    format_ok = forms.ChoiceField(choices=YES_NO, required=False, label="Format ok")
    reward_min = forms.FloatField(required=False)
    reward_max = forms.FloatField(required=False)
    component = forms.SlugField(required=False, max_length=64, help_text="a reward component, e.g. math_accuracy")
    component_min = forms.FloatField(required=False)
    component_max = forms.FloatField(required=False)
    language_min = forms.FloatField(required=False, min_value=0, max_value=1, label="Language consistency ≥")
    length_min = forms.IntegerField(required=False, min_value=0, label="Length ≥ (chars)")
    length_max = forms.IntegerField(required=False, min_value=0, label="Length ≤ (chars)")
    finish = forms.ChoiceField(choices=[("", "any")] + Rollout.FinishReason.choices, required=False)
    reflection = forms.ChoiceField(choices=YES_NO, required=False, help_text="wait, re-check, alternatively…")
    annotated = forms.ChoiceField(choices=YES_NO, required=False)
    verdicts = forms.ChoiceField(choices=VERDICTS, required=False, label="Source vs ours",
                                 help_text="the source's own correctness label against our scorer's")
    meta_key = forms.RegexField(r"^[A-Za-z0-9_.\-]{1,64}$", required=False, label="Metadata key",
                                help_text="a field the source carried, e.g. a log_extra column")
    meta_value = forms.CharField(required=False, max_length=200, label="Metadata value")
    entropy_min = forms.FloatField(required=False, min_value=0, label="Max token entropy ≥",
                                   help_text="nats; rollouts with a token trace (the token lens)")
    entropy_max = forms.FloatField(required=False, min_value=0, label="Max token entropy ≤")
    mean_logprob_max = forms.FloatField(required=False, max_value=0, label="Mean token log-prob ≤")
    min_logprob_max = forms.FloatField(required=False, max_value=0, label="Lowest token log-prob ≤",
                                       help_text="finds the rollouts with a near-random token")
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)

    def clean(self):
        data = super().clean()
        for low, high in (("step_min", "step_max"), ("reward_min", "reward_max"),
                          ("component_min", "component_max"), ("length_min", "length_max"),
                          ("entropy_min", "entropy_max")):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(high, f"must be at least {low.replace('_', ' ')} ({data[low]})")
        if data.get("meta_value") and not data.get("meta_key"):
            self.add_error("meta_key", "name the metadata key the value applies to")
        if (data.get("component_min") is not None or data.get("component_max") is not None) and not data.get(
            "component"
        ):
            self.add_error("component", "name the reward component the range applies to")
        return data

    @property
    def token_sort(self) -> str | None:
        """What a token-lens sort orders by, in words (the list shows it in a column), or None."""
        field = SORTS[self.cleaned_data.get("sort") or "newest"][0] if self.is_valid() else None
        return {"token_max_entropy": "max entropy", "token_mean_logprob": "mean log-prob",
                "token_min_logprob": "lowest log-prob"}.get(field)

    def is_filtered(self) -> bool:
        return any(value not in (None, "") for name, value in self.cleaned_data.items() if name != "sort")

    def rollouts(self):
        """The filtered queryset (unordered: the page applies the sort), annotated with a token-lens sort's
        field (token_max_entropy, ...) when that is the sort."""
        data = self.cleaned_data
        rollouts = Rollout.objects.all()
        exact = {"job_id": data["job"], "prompt_id": data["prompt"], "model_version": data["model"],
                 "step__gte": data["step_min"], "step__lte": data["step_max"],
                 "total_reward__gte": data["reward_min"], "total_reward__lte": data["reward_max"],
                 "language_consistency__gte": data["language_min"],
                 "length_chars__gte": data["length_min"], "length_chars__lte": data["length_max"],
                 "finish_reason": data["finish"] or None}
        rollouts = rollouts.filter(**{name: value for name, value in exact.items() if value is not None})
        for name, column in (("correct", "is_correct"), ("format_ok", "format_ok"), ("reflection", "has_reflection")):
            if data[name]:
                rollouts = rollouts.filter(**{column: data[name] == "yes"})
        if data["dataset"]:
            rollouts = rollouts.filter(prompt__dataset=data["dataset"])
        if data["component"]:
            rollouts = _component_range(rollouts, data["component"], data["component_min"], data["component_max"])
        if data["annotated"]:
            annotated = Exists(Rollout.objects.filter(pk=OuterRef("pk"), review_items__annotations__isnull=False))
            rollouts = rollouts.filter(annotated if data["annotated"] == "yes" else ~annotated)
        if data["verdicts"]:
            rollouts = rollouts.filter(VERDICT_FILTERS[data["verdicts"]])
        if data["meta_key"]:
            value = KeyTextTransform(data["meta_key"], "metadata")  # the key is data, never a lookup path
            rollouts = rollouts.alias(meta=value).filter(
                **({"meta": data["meta_value"]} if data["meta_value"] else {"meta__isnull": False}))
        token_filters = {"tokens__max_entropy__gte": data["entropy_min"],
                         "tokens__max_entropy__lte": data["entropy_max"],
                         "tokens__mean_logprob__lte": data["mean_logprob_max"],
                         "tokens__min_logprob__lte": data["min_logprob_max"]}
        token_filters = {name: value for name, value in token_filters.items() if value is not None}
        if token_filters:
            rollouts = rollouts.filter(**token_filters)
        sort_field = SORTS[data["sort"] or "newest"][0]
        if (token_filters or sort_field in TOKEN_SORT_COLUMNS) and data["job"]:
            # The traces' own job column too: Postgres can walk their (job, summary) indexes.
            rollouts = rollouts.filter(tokens__job_id=data["job"])
        if sort_field in TOKEN_SORT_COLUMNS:  # every caller sorts by the field's name (the page, the API, queues)
            rollouts = rollouts.annotate(**{sort_field: F(TOKEN_SORT_COLUMNS[sort_field])})
        if data["q"].strip():
            rollouts = _search(rollouts, data["q"].strip())
        return rollouts

    def page(self, after: str | None, per_page: int = PER_PAGE, before: str | None = None):
        field, descending = SORTS[self.cleaned_data["sort"] or "newest"]
        # A row shows the start of each text: 50 rows of 5 MB completions must not cross the wire.
        rollouts = self.rollouts().only(*LIST_COLUMNS).annotate(
            question_start=Left("prompt__question", 200), answer_start=Left("answer", 120),
            completion_start=Left("completion", 300),
        )
        if field in TOKEN_SORT_COLUMNS:
            rollouts = rollouts.annotate(token_value=F(field))
        return keyset_page(rollouts, after, per_page, field=field, descending=descending, before=before)


def _component_range(rollouts, component: str, low, high):
    rollouts = rollouts.alias(component_value=reward_component_value(component)).filter(component_value__isnull=False)
    if low is not None:
        rollouts = rollouts.filter(component_value__gte=low)
    if high is not None:
        rollouts = rollouts.filter(component_value__lte=high)
    return rollouts


def _search(rollouts, query: str):
    """Completion matches, or the prompt's question matches (as an id list, so Postgres can OR two index scans)."""
    prompts = search.matches(Prompt.objects.all(), "question", query).values_list("pk", flat=True)
    prompt_ids = list(prompts[: MAX_PROMPT_IDS + 1])
    by_question = Q(prompt_id__in=prompt_ids if len(prompt_ids) <= MAX_PROMPT_IDS else prompts)
    return rollouts.filter(search.match_stored("search", "completion", query) | by_question)
