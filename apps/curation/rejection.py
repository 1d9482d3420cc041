"""Rejection sampling, as in the R1 report: k samples per prompt from a checkpoint, keep the
correct ones, drop the unreadable ones, keep at most m per prompt, de-duplicate, and freeze the
rest as a dataset version in chat (SFT) format, each example linked to its rollout."""

import hashlib
import re
from collections import Counter

from django import forms

from apps.datasets.models import Dataset, Example, ModelVersion
from apps.datasets.versions import freeze_version
from apps.jobs.kinds import job_kind
from apps.rollouts.generation import SamplingForm, sample_rollouts
from apps.rollouts.models import Rollout
from apps.rollouts.scoring import sample_for
from workers.rewards.filters import FILTERS, apply_filters

DEFAULT_FILTERS = ["truncated", "mixed_language", "long_paragraphs", "code_in_reasoning", "repetition_loop"]


class RejectionParamsForm(SamplingForm):
    default_recipe = "r1-zero-math"  # keeping the correct samples needs an accuracy component
    n = forms.IntegerField(initial=8, min_value=1, max_value=1024, help_text="k: samples per prompt")
    keep_per_prompt = forms.IntegerField(initial=2, min_value=1, help_text="m: at most this many per prompt")
    prefer = forms.ChoiceField(choices=[("shortest", "shortest"), ("diverse", "most diverse")], initial="shortest")
    filters = forms.CharField(initial=",".join(DEFAULT_FILTERS), required=False,
                              help_text=f"Comma-separated readability filters: {', '.join(FILTERS)}")
    output_dataset = forms.SlugField(max_length=100, help_text="Dataset the version is frozen into (made if new)")

    def clean_filters(self):
        names = [n.strip() for n in self.cleaned_data["filters"].split(",") if n.strip()]
        unknown = [n for n in names if n not in FILTERS]
        if unknown:
            raise forms.ValidationError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
        return ",".join(names)


@job_kind("rejection_sample", "Rejection sampling", RejectionParamsForm, queue=ModelVersion.queue_for)
def run_rejection_sampling(ctx) -> dict:
    params = ctx.params
    sample_rollouts(ctx, params)
    filters = [n for n in params["filters"].split(",") if n]
    dropped: Counter = Counter()
    kept_by_prompt: dict[int, list[Rollout]] = {}
    for rollout in Rollout.objects.filter(job=ctx.job).select_related("prompt").order_by("prompt_id", "sample_index"):
        if not rollout.is_correct:
            dropped["incorrect"] += 1
            continue
        verdict = apply_filters(sample_for(rollout.prompt, rollout.completion, rollout.finish_reason), filters)
        if not verdict.keep:
            dropped[verdict.reason.split(":", 1)[0]] += 1
            continue
        kept_by_prompt.setdefault(rollout.prompt_id, []).append(rollout)

    chosen, seen = [], set()
    for candidates in kept_by_prompt.values():
        unique = []
        for rollout in candidates:
            key = hashlib.sha256(_normalized(rollout.completion).encode()).hexdigest()
            if key in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(key)
                unique.append(rollout)
        picked = _pick(unique, params["keep_per_prompt"], params["prefer"])
        dropped["over the per-prompt limit"] += len(unique) - len(picked)
        chosen += picked

    output, _ = Dataset.objects.get_or_create(name=params["output_dataset"])
    examples = [_example(output, rollout) for rollout in chosen]
    version = freeze_version(
        output, examples, user=ctx.job.created_by, note=f"Rejection sampling, job {ctx.job.pk}",
        provenance={"job": ctx.job.pk, "model_version": params["model_version"], "source_dataset": params["dataset"],
                    "filters": filters, "keep_per_prompt": params["keep_per_prompt"], "prefer": params["prefer"]},
        via="job",
    )
    ctx.log(f"kept {len(examples)} examples in {version}; dropped {dict(dropped)}")
    return {"kept": len(examples), "dropped": dict(dropped), "dataset_version": version.pk, "version": str(version)}


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _pick(rollouts: list[Rollout], m: int, prefer: str) -> list[Rollout]:
    if prefer == "shortest" or len(rollouts) <= m:
        return sorted(rollouts, key=lambda r: (len(r.completion), r.sample_index))[:m]
    # Most diverse: greedily add the rollout whose words overlap least with those already picked.
    words = {r.pk: set(r.completion.lower().split()) for r in rollouts}
    picked = [min(rollouts, key=lambda r: len(r.completion))]
    while len(picked) < m:
        def closeness(r):
            return max(len(words[r.pk] & words[p.pk]) / (len(words[r.pk] | words[p.pk]) or 1) for p in picked)
        picked.append(min((r for r in rollouts if r not in picked), key=closeness))
    return picked


def _example(dataset: Dataset, rollout: Rollout) -> Example:
    messages = Example.chat(rollout.prompt.question, rollout.completion)
    example = Example(dataset=dataset, messages=messages, prompt=rollout.prompt, source_rollout=rollout,
                      source="rejection_sampling")
    example.content_hash = Example.hash_for(messages)
    existing = Example.objects.filter(dataset=dataset, content_hash=example.content_hash).first()
    if existing:
        return existing
    example.save()
    return example
