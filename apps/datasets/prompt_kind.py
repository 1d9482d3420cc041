"""Reasoning and non-reasoning prompts: the filter the dataset page and the API share, and marking in bulk.

A prompt is non-reasoning (`Prompt.reasoning = False`) when it needs no long chain of thought: writing,
factual QA, translation, self-cognition, a greeting. Generation asks such prompts for a short chain of
thought or none, and rejection sampling keeps their samples without a rule-checked answer.
"""

from django import forms
from django.db.models import QuerySet

from apps.core import audit
from apps.datasets.importing import PROMPT_KINDS
from apps.datasets.models import Dataset, Prompt


class PromptFilterForm(forms.Form):
    """Which of a dataset's prompts a page shows or a bulk mark changes (GET parameters)."""

    q = forms.CharField(max_length=200, required=False)
    kind = forms.ChoiceField(choices=[("", "any kind"), *PROMPT_KINDS], required=False)
    domain = forms.CharField(max_length=32, required=False)


def filter_prompts(prompts: QuerySet, q: str = "", kind: str = "", domain: str = "") -> QuerySet:
    if q.strip():
        prompts = prompts.filter(question__icontains=q.strip())
    if kind:
        prompts = prompts.filter(reasoning=kind == "reasoning")
    if domain.strip():
        prompts = prompts.filter(domain=domain.strip())
    return prompts


def mark_prompts(dataset: Dataset, prompts: QuerySet, reasoning: bool, user=None, via: str = "web",
                 **described) -> dict:
    """Set `reasoning` on `prompts` (of `dataset`); one audit event says how many matched and changed."""
    prompts = prompts.filter(dataset=dataset)
    matched = prompts.count()
    changed = prompts.exclude(reasoning=reasoning).update(reasoning=reasoning)
    audit.record(user, "prompts.mark", dataset, via=via, reasoning=reasoning, matched=matched, changed=changed,
                 **{key: value for key, value in described.items() if value})
    return {"matched": matched, "changed": changed}


def kind_counts(dataset: Dataset) -> dict:
    """How many of the dataset's prompts are of each kind."""
    non_reasoning = Prompt.objects.filter(dataset=dataset, reasoning=False).count()
    total = Prompt.objects.filter(dataset=dataset).count()
    return {"reasoning": total - non_reasoning, "non_reasoning": non_reasoning}
