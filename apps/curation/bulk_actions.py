"""Bulk actions on a rollout filter: accept every matching rollout into a dataset, and undo that.

The filter is the rollout browser's own (`RolloutFilterForm`), stored as its GET parameters, so the
preview count, the job and the page that links back to the browser all mean the same rollouts.
The `bulk_accept` job (apps.jobs.kinds) writes the examples in chunks; each example it makes links
to its BulkAction, which is what the undo removes - except examples a frozen version holds.
"""

from dataclasses import dataclass, field

from django import forms
from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.datasets.models import (
    BulkAction,
    Dataset,
    DatasetVersion,
    DatasetVersionExample,
    Example,
    RolloutProvenance,
)
from apps.jobs import launching
from apps.jobs.kinds import job_kind
from apps.jobs.models import Job
from apps.jobs.runner import JobCancelled
from apps.rollouts.browse import RolloutFilterForm

CHUNK = 1000  # rollouts per read and insert; completions can be long
DELETE_CHUNK = 2000
CANDIDATE_SET = "Candidate set made by a bulk action"


class FilterError(ValueError):
    """The stored filter is not a valid rollout browser filter; the message names the fields."""


def rollout_filter(params: dict) -> RolloutFilterForm:
    """The browser's filter form bound to `params`, validated (FilterError naming the bad fields)."""
    form = RolloutFilterForm(params)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        raise FilterError(f"The rollout filter is not valid ({problems})")
    return form


def filter_params(query: dict) -> dict:
    """The filter's parameters that are set (the browser sends every field; empty ones mean 'any')."""
    names = set(RolloutFilterForm.base_fields) - {"sort"}  # order does not change which rollouts match
    return {name: str(value) for name, value in query.items() if name in names and str(value).strip()}


def describe_filter(params: dict) -> list[str]:
    """The filter in words, one phrase per condition, e.g. ['Correct: yes', 'Language consistency ≥ 0.95']."""
    form = RolloutFilterForm(params)
    if not form.is_valid():
        return [f"{name}={value}" for name, value in params.items()]
    phrases = []
    for name, value in form.cleaned_data.items():
        if name == "sort" or value in (None, ""):
            continue
        form_field = form.fields[name]
        label = str(form_field.label or name.replace("_", " ").capitalize())
        if isinstance(form_field, forms.ChoiceField) and not isinstance(form_field, forms.ModelChoiceField):
            shown = dict(form_field.choices).get(value, value)  # "yes", not the stored code
        else:
            shown = value
        phrases.append(f"{label} {shown}" if label.endswith(("≥", "≤")) else f"{label}: {shown}")
    return phrases


# -- launching -----------------------------------------------------------------------------------


class BulkAcceptParamsForm(forms.Form):
    """The `bulk_accept` job's parameters (the same from the bulk page, the API and the command line)."""

    filters = forms.JSONField(help_text="The rollout browser's filter, as its GET parameters")
    dataset = forms.SlugField(max_length=100, help_text="Dataset the examples go into (made if new)")
    bulk_action = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput,
                                     help_text="The BulkAction this job carries out (made by the job if empty)")

    def clean_filters(self):
        params = self.cleaned_data["filters"]
        if not isinstance(params, dict):
            raise forms.ValidationError("must be an object of rollout filter parameters, e.g. {\"correct\": \"yes\"}")
        try:
            rollout_filter(params)
        except FilterError as exc:
            raise forms.ValidationError(str(exc)) from None
        return filter_params(params)

    def clean_bulk_action(self):
        pk = self.cleaned_data["bulk_action"]
        if pk is not None and not BulkAction.objects.filter(pk=pk).exists():
            raise forms.ValidationError(f"No bulk action #{pk}")
        return pk


def start_bulk_accept(params: dict, dataset_name: str, user, via: str = "web") -> BulkAction:
    """Record the action and launch its job (it runs after this transaction commits)."""
    filters = filter_params(params)
    rollout_filter(filters)
    with transaction.atomic():
        dataset, _ = Dataset.objects.get_or_create(
            name=dataset_name, defaults={"description": CANDIDATE_SET, "created_by": user})
        action = BulkAction.objects.create(user=user, filter_params=filters, dataset=dataset)
        action.job = launching.launch("bulk_accept", {"filters": filters, "dataset": dataset.name,
                                                  "bulk_action": action.pk},
                                      user=user, label=f"Accept rollouts into {dataset.name}", via=via)
        action.save(update_fields=["job"])
    return action


# -- the job -------------------------------------------------------------------------------------


@job_kind("bulk_accept", "Accept rollouts into a dataset", BulkAcceptParamsForm, own_page="rollout_list")
def run_bulk_accept(ctx) -> dict:
    """Turn each matching rollout into an Example of the target dataset, chunk by chunk."""
    params = ctx.params
    action = _action_for(ctx.job, params)
    BulkAction.objects.filter(pk=action.pk).update(status=BulkAction.Status.RUNNING, job=ctx.job)
    status = BulkAction.Status.FAILED
    try:
        result = _accept(ctx, action)
        status = BulkAction.Status.DONE
        return result
    except JobCancelled:
        status = BulkAction.Status.CANCELLED
        raise
    finally:
        BulkAction.objects.filter(pk=action.pk).update(status=status)
        action.refresh_from_db()
        audit.record(action.user, "bulk.run", action, via="job", job=ctx.job.pk, status=status,
                     dataset=action.dataset.name, filters=action.filter_params, matched=action.matched,
                     created=action.created, already_present=action.already_present)


def _action_for(job: Job, params: dict) -> BulkAction:
    if params.get("bulk_action"):
        return BulkAction.objects.select_related("dataset").get(pk=params["bulk_action"])
    # Launched without a page (the API, the command line): the job records its own action.
    dataset, _ = Dataset.objects.get_or_create(
        name=params["dataset"], defaults={"description": CANDIDATE_SET, "created_by": job.created_by})
    return BulkAction.objects.create(user=job.created_by, filter_params=params["filters"], dataset=dataset, job=job)


def _accept(ctx, action: BulkAction) -> dict:
    rollouts = rollout_filter(action.filter_params).rollouts()
    # Rollouts landing while the job runs are not part of what was previewed: stop at today's last id.
    last_id = rollouts.aggregate(last=Max("pk"))["last"] or 0
    rollouts = rollouts.filter(pk__lte=last_id).order_by("pk")
    matched = rollouts.count()
    before = action.examples.count()  # a retried job finds its first attempt's examples
    created, processed, after = before, 0, 0
    BulkAction.objects.filter(pk=action.pk).update(matched=matched, processed=0, created=created)
    ctx.progress(0, matched)
    ctx.log(f"{matched} rollouts match; accepting into {action.dataset.name}")
    while True:
        ctx.check_cancelled()
        chunk = list(rollouts.filter(pk__gt=after).values(
            "pk", "job_id", "model_version_id", "prompt_id", "completion", "prompt__question")[:CHUNK])
        if not chunk:
            break
        after = chunk[-1]["pk"]
        with transaction.atomic():  # the examples and the counts that describe them land together
            created += bulk_insert(Example, [_example_row(action, rollout) for rollout in chunk])
            processed += len(chunk)
            BulkAction.objects.filter(pk=action.pk).update(
                processed=processed, created=created, already_present=max(0, processed - created))
        ctx.progress(processed, matched)
    present = max(0, processed - created)
    ctx.log(f"created {created} examples; {present} were already in {action.dataset.name}")
    return {"bulk_action": action.pk, "dataset": action.dataset.name, "matched": matched, "created": created,
            "already_present": present}


def _example_row(action: BulkAction, rollout: dict) -> dict:
    messages = Example.chat(rollout["prompt__question"], rollout["completion"])
    return {
        "dataset_id": action.dataset_id, "messages": messages, "prompt_id": rollout["prompt_id"],
        "source_rollout_id": rollout["pk"], "source": "bulk", "content_hash": Example.hash_for(messages),
        "provenance": RolloutProvenance(rollout=rollout["pk"], job=rollout["job_id"],
                                        model_version=rollout["model_version_id"], bulk_action=action.pk),
        "created_by_id": action.user_id, "bulk_action_id": action.pk,
    }


# -- undo ----------------------------------------------------------------------------------------


class UndoRefused(Exception):
    pass


@dataclass
class UndoResult:
    removed: int = 0
    kept: int = 0  # examples a frozen version holds: they stay
    versions: list[DatasetVersion] = field(default_factory=list)  # the versions holding them
    already_undone: bool = False

    def message(self, action: BulkAction) -> str:
        if self.already_undone:
            by = f" by {action.undone_by}" if action.undone_by else ""
            return f"This bulk action was already undone on {action.undone_at:%Y-%m-%d %H:%M}{by}; nothing changed."
        text = f"Removed {self.removed} example{'s' if self.removed != 1 else ''} this action made."
        if self.kept:
            held = ", ".join(str(v) for v in self.versions)
            text += f" {self.kept} stayed because frozen versions hold them: {held}."
        return text


def undo_bulk_action(action: BulkAction, user, via: str = "web") -> UndoResult:
    """Remove the examples `action` made, except those in a frozen version (those stay, and are counted)."""
    with transaction.atomic():
        action = (BulkAction.objects.select_for_update(of=("self",)).select_related("job", "dataset", "undone_by")
                  .get(pk=action.pk))
        if action.undone_at is not None:
            return UndoResult(already_undone=True)
        if action.job is not None and not action.job.is_finished:
            raise UndoRefused(f"Job #{action.job.pk} is still {action.job.status}; cancel it or let it finish, "
                              "then undo")
        made = Example.objects.filter(bulk_action=action)
        frozen = Exists(DatasetVersionExample.objects.filter(example=OuterRef("pk")))
        kept = made.filter(frozen).count()
        versions = list(DatasetVersion.objects.filter(
            pk__in=DatasetVersionExample.objects.filter(example__bulk_action=action).values("version_id"))
            .select_related("dataset").order_by("dataset__name", "number"))
        removed = 0
        removable = made.exclude(frozen).order_by("pk").values_list("pk", flat=True)
        while ids := list(removable[:DELETE_CHUNK]):
            # The ORM delete (not raw SQL) keeps every on_delete rule, e.g. review items that point here.
            Example.objects.filter(pk__in=ids).only("pk").delete()
            removed += len(ids)
        result = UndoResult(removed=removed, kept=kept, versions=versions)
        action.undone_at, action.undone_by = timezone.now(), user
        action.undo_result = {"removed": removed, "kept": kept,
                              "versions": [{"id": v.pk, "label": str(v)} for v in versions]}
        action.save(update_fields=["undone_at", "undone_by", "undo_result"])
        audit.record(user, "bulk.undo", action, via=via, removed=removed, kept=kept,
                     versions=[str(v) for v in versions])
    return result
