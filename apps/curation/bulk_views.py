"""Bulk action pages: preview a rollout filter's matches and accept them all; follow the job; undo."""

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.curation.bulk_actions import (
    UndoRefused,
    describe_filter,
    filter_params,
    start_bulk_accept,
    undo_bulk_action,
)
from apps.datasets.models import BulkAction, Dataset
from apps.rollouts.browse import RolloutFilterForm

SAMPLE_ROWS = 10


class BulkAcceptForm(forms.Form):
    dataset = forms.SlugField(max_length=100, label="Accept into dataset",
                              help_text="An existing dataset, or a new name: it is made as a candidate set")
    seen_count = forms.IntegerField(min_value=0, widget=forms.HiddenInput)


@permission_required("datasets.add_example", raise_exception=True)
def rollout_bulk(request):
    """GET: the filter in words, the exact count and a sample. POST: launch the accept job."""
    filters = filter_params(request.GET)
    filter_form = RolloutFilterForm(filters)
    context = {"filter_form": filter_form, "query": urlencode(filters), "datasets": Dataset.objects.all()}
    if not filter_form.is_valid():
        return render(request, "curation/bulk_preview.html", context, status=400)
    count = filter_form.rollouts().count()
    context |= {"count": count, "phrases": describe_filter(filters),
                "sample": filter_form.page(None, per_page=SAMPLE_ROWS).items}
    status = 200
    if request.method == "POST":
        form = BulkAcceptForm(request.POST)
        if not form.is_valid():
            status = 400
        elif count == 0:
            form.add_error(None, "No rollout matches this filter; there is nothing to accept.")
            status = 400
        elif form.cleaned_data["seen_count"] != count:
            # The preview is what the user agreed to: a different count needs a fresh look.
            context["changed_from"] = form.cleaned_data["seen_count"]
            form = BulkAcceptForm(initial={"dataset": form.cleaned_data["dataset"], "seen_count": count})
            status = 409
        else:
            action = start_bulk_accept(filters, form.cleaned_data["dataset"], request.user)
            messages.success(request, f"Accepting {count:,} rollouts into {action.dataset.name}: job #{action.job_id}.")
            return redirect("bulk_detail", pk=action.pk)
    else:
        form = BulkAcceptForm(initial={"seen_count": count})
    context["form"] = form
    return render(request, "curation/bulk_preview.html", context, status=status)


@permission_required("datasets.view_bulkaction", raise_exception=True)
def bulk_list(request):
    actions = BulkAction.objects.select_related("dataset", "user", "job")
    try:
        page = keyset_page(actions, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": f"after: {exc}"}, status=400)
    return render(request, "curation/bulk_list.html", {"page": page})


@permission_required("datasets.view_bulkaction", raise_exception=True)
def bulk_detail(request, pk):
    action = get_object_or_404(BulkAction.objects.select_related("dataset", "user", "job", "undone_by"), pk=pk)
    context = {"action": action, "job": action.job, "phrases": describe_filter(action.filter_params),
               "query": urlencode(action.filter_params)}
    template = "curation/_bulk_status.html" if request.htmx else "curation/bulk_detail.html"
    return render(request, template, context)


@require_POST
@permission_required("datasets.add_example", raise_exception=True)
def bulk_undo(request, pk):
    action = get_object_or_404(BulkAction, pk=pk)
    try:
        result = undo_bulk_action(action, request.user)
    except UndoRefused as exc:
        messages.error(request, str(exc))
        return redirect("bulk_detail", pk=pk)
    action.refresh_from_db()
    (messages.info if result.already_undone else messages.success)(request, result.message(action))
    return redirect("bulk_detail", pk=pk)
