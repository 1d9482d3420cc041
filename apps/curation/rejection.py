"""Rejection sampling, as in the R1 report: k samples per prompt from a checkpoint, keep the
correct ones, drop the unreadable ones, keep at most m per prompt, de-duplicate, and freeze the
rest as a dataset version in chat (SFT) format, each example linked to its rollout.

Prompts marked non-reasoning are asked as the job's non_reasoning_mode says and kept without a
rule-checked answer (apps/curation/non_reasoning.py). With a non_reasoning_share, the kept
reasoning and non-reasoning examples are frozen as two part versions and composed into the job's
version at that share; without one, everything kept is frozen as one version, as before."""

import hashlib
import re
from collections import Counter

from django import forms

from apps.curation.non_reasoning import ShareNotMet, drop_reason, example_text, mix_counts
from apps.datasets.models import Dataset, DatasetVersion, Example, ModelVersion, Prompt
from apps.datasets.versions import compose_version, freeze_version
from apps.jobs.kinds import job_kind
from apps.rollouts.generation import GenerationForm, sample_rollouts
from apps.rollouts.models import Rollout
from apps.rollouts.scoring import sample_for
from workers.rewards.filters import FILTERS, apply_filters

DEFAULT_FILTERS = ["truncated", "mixed_language", "long_paragraphs", "code_in_reasoning", "repetition_loop"]


class RejectionParamsForm(GenerationForm):
    default_recipe = "r1-zero-math"  # keeping the correct samples needs an accuracy component
    n = forms.IntegerField(initial=8, min_value=1, max_value=1024, help_text="k: samples per prompt")
    keep_per_prompt = forms.IntegerField(initial=2, min_value=1, help_text="m: at most this many per prompt")
    prefer = forms.ChoiceField(choices=[("shortest", "shortest"), ("diverse", "most diverse")], initial="shortest")
    filters = forms.CharField(initial=",".join(DEFAULT_FILTERS), required=False,
                              help_text=f"Comma-separated readability filters: {', '.join(FILTERS)}")
    output_dataset = forms.SlugField(max_length=100, help_text="Dataset the version is frozen into (made if new)")
    non_reasoning_share = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0,
        help_text="Share of non-reasoning examples in the version, e.g. 0.25 (the report: ~200k of ~800k); the short "
                  "side is taken whole and the other sampled down to it. Empty: everything kept, unmixed")

    def clean(self):
        data = super().clean()
        share, dataset = data.get("non_reasoning_share"), data.get("dataset")
        if share is not None and dataset is not None:
            ids = Prompt.objects.filter(dataset=dataset).order_by("id")[: data.get("limit") or None].values("id")
            kinds = set(Prompt.objects.filter(id__in=ids).values_list("reasoning", flat=True).distinct())
            if share > 0 and False not in kinds:
                self.add_error("non_reasoning_share", f"{dataset.name} has no prompt marked non-reasoning"
                               f"{' among the first ' + str(data['limit']) if data.get('limit') else ''}: mark "
                               "some on the dataset's page, or leave the share empty")
            elif share < 1 and True not in kinds:
                self.add_error("non_reasoning_share", f"{dataset.name} has only non-reasoning prompts: a share "
                                                      "below 1 needs reasoning ones")
        return data

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
    dropped_non_reasoning: Counter = Counter()
    kept_by_prompt: dict[int, list[Rollout]] = {}
    for rollout in Rollout.objects.filter(job=ctx.job).select_related("prompt").order_by("prompt_id", "sample_index"):
        needs_reasoning = rollout.prompt.reasoning
        reason = _reasoning_drop_reason(rollout, filters) if needs_reasoning else drop_reason(rollout, filters)
        if reason:
            dropped[reason] += 1
            if not needs_reasoning:
                dropped_non_reasoning[reason] += 1
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
    reasoning = [_example(output, rollout) for rollout in chosen if rollout.prompt.reasoning]
    non_reasoning = [_example(output, rollout) for rollout in chosen if not rollout.prompt.reasoning]
    provenance = {"job": ctx.job.pk, "model_version": params["model_version"], "source_dataset": params["dataset"],
                  "filters": filters, "keep_per_prompt": params["keep_per_prompt"], "prefer": params["prefer"]}
    counts = {"kept_reasoning": len(reasoning), "kept_non_reasoning": len(non_reasoning)}
    share = params.get("non_reasoning_share")
    if share is None:
        version = freeze_version(output, _in_order(chosen, reasoning, non_reasoning), user=ctx.job.created_by,
                                 via="job", provenance=provenance | counts,
                                 note=f"Rejection sampling, job {ctx.job.pk}: {_described(counts)}")
        in_version = (len(reasoning), len(non_reasoning))
    else:
        version, in_version, parts = _mixed_version(ctx, output, reasoning, non_reasoning, share, provenance, counts)
        counts["part_versions"] = parts
    mix = {"reasoning_in_version": in_version[0], "non_reasoning_in_version": in_version[1],
           "non_reasoning_share": round(in_version[1] / (sum(in_version) or 1), 4), "non_reasoning_share_asked": share}
    ctx.log(f"kept {version.example_count} examples in {version} ({_described(counts)}); dropped {dict(dropped)}")
    result = {"kept": version.example_count, "dropped": dict(dropped), "dataset_version": version.pk,
              "version": str(version), **counts, **mix}
    if dropped_non_reasoning:
        result["dropped_non_reasoning"] = dict(dropped_non_reasoning)
    return result


def _reasoning_drop_reason(rollout: Rollout, filters: list[str]) -> str | None:
    if not rollout.is_correct:
        return "incorrect"
    verdict = apply_filters(sample_for(rollout.prompt, rollout.completion, rollout.finish_reason), filters)
    return None if verdict.keep else verdict.reason.split(":", 1)[0]


def _in_order(chosen: list[Rollout], reasoning: list[Example], non_reasoning: list[Example]) -> list[Example]:
    """The examples of `chosen` in its order (by prompt), from the two lists made per kind."""
    by_kind = {True: iter(reasoning), False: iter(non_reasoning)}
    return [next(by_kind[rollout.prompt.reasoning]) for rollout in chosen]


def _described(counts: dict) -> str:
    return f"{counts['kept_reasoning']} reasoning and {counts['kept_non_reasoning']} non-reasoning examples kept"


def _mixed_version(ctx, output, reasoning, non_reasoning, share, provenance, counts):
    """Freeze each kind's kept examples as a part version, then compose the job's version from them at `share`
    (seeded by the job's seed). A share that needs a kind of which none was kept fails the job, after the
    parts are frozen: compose from them by hand, or launch again with another share."""
    user, job = ctx.job.created_by, ctx.job.pk
    parts: dict[str, DatasetVersion] = {}
    for kind, examples in (("reasoning", reasoning), ("non_reasoning", non_reasoning)):
        if examples:
            parts[kind] = freeze_version(
                output, examples, user=user, via="job", provenance={"part_of_job": job, "part": kind},
                note=f"Rejection sampling, job {job}: the {len(examples)} {kind.replace('_', '-')} examples kept "
                     "(a part of the job's mixed version)")
    part_ids = {kind: version.pk for kind, version in parts.items()}
    try:
        taken = mix_counts(len(reasoning), len(non_reasoning), share)
    except ShareNotMet as exc:
        frozen = ", ".join(f"{version} ({kind.replace('_', '-')})" for kind, version in parts.items()) or "nothing"
        raise ShareNotMet(f"non_reasoning_share: {exc} ({_described(counts)}). Frozen: {frozen}; compose from "
                          "them on the dataset's compose page, or launch again with another share") from None
    sources = [(parts[kind], n) for kind, n in zip(("reasoning", "non_reasoning"), taken) if n]
    version = compose_version(
        output, sources, seed=ctx.params.get("seed") or 0, user=user, via="job",
        note=f"Rejection sampling, job {job}: {taken[0]} reasoning + {taken[1]} non-reasoning examples "
             f"(non-reasoning share {share} asked; {_described(counts)})",
        provenance=provenance | counts | {"part_versions": part_ids, "non_reasoning_share": share})
    return version, taken, part_ids


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
    messages = Example.chat(rollout.prompt.question, example_text(rollout))
    example = Example(dataset=dataset, messages=messages, prompt=rollout.prompt, source_rollout=rollout,
                      source="rejection_sampling")
    example.content_hash = Example.hash_for(messages)
    existing = Example.objects.filter(dataset=dataset, content_hash=example.content_hash).first()
    if existing:
        return existing
    example.save()
    return example
