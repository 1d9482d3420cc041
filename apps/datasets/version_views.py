"""Dataset version pages: the list, one version (its examples, keyset-paged), a diff, compose and freeze."""

import json

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Left
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.datasets.models import Dataset, DatasetVersion, DatasetVersionExample
from apps.datasets.versions import (
    compose_version,
    diff_versions,
    example_provenance_summary,
    freeze_all_examples,
    provenance_summary,
    same_content_as,
)
from apps.jobs import launching

MAX_SOURCES = 6



EXAMPLES_PER_PAGE = 50
TEXT_START = 300  # characters of each message a row shows: a 5 MB chain of thought must not cross the wire


def _bad_request(request, message: str):
    return render(request, "error.html", {"message": message}, status=400)


@permission_required("datasets.view_datasetversion", raise_exception=True)
def version_list(request, name):
    dataset = get_object_or_404(Dataset, name=name)
    versions = list(dataset.versions.select_related("created_by").order_by("number"))
    last_with_hash: dict[str, DatasetVersion] = {}
    for index, version in enumerate(versions):
        version.summary = provenance_summary(version.provenance)
        version.same_as = last_with_hash.get(version.content_hash)  # "same content as vN", as the detail says
        last_with_hash[version.content_hash] = version
        version.previous = versions[index - 1] if index else None
    context = {"dataset": dataset, "versions": versions[::-1], "example_count": dataset.examples.count(),
               "can_compose": bool(versions) or DatasetVersion.objects.exists()}  # compose needs a source version
    return render(request, "datasets/version_list.html", context)


@permission_required("datasets.view_datasetversion", raise_exception=True)
def version_detail(request, pk):
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset", "created_by"), pk=pk)
    entries = (DatasetVersionExample.objects.filter(version=version).select_related("example")
               .defer("example__messages")
               .annotate(question_start=Left(KeyTextTransform("content", KeyTransform("0", "example__messages")),
                                             TEXT_START),
                         answer_start=Left(KeyTextTransform("content", KeyTransform("1", "example__messages")),
                                           TEXT_START)))
    try:
        page = keyset_page(entries, request.GET.get("after"), EXAMPLES_PER_PAGE, field="position", descending=False)
    except ValueError as exc:
        return _bad_request(request, f"after: {exc}")
    for entry in page.items:
        entry.provenance_text = example_provenance_summary(entry.example.provenance)
    context = {"version": version, "page": page}
    if request.htmx:
        return render(request, "datasets/_version_example_rows.html", context)
    context |= {
        "summary": provenance_summary(version.provenance),
        "provenance_json": json.dumps(version.provenance, indent=2, ensure_ascii=False),
        "same_as": same_content_as(version),
        "previous": version.dataset.versions.filter(number__lt=version.number).order_by("-number").first(),
        "formats": ["messages", "raw", "parquet"],
    }
    return render(request, "datasets/version_detail.html", context)


@permission_required("datasets.view_datasetversion", raise_exception=True)
def version_diff(request):
    choices = DatasetVersion.objects.select_related("dataset").order_by("dataset__name", "-number")
    raw = {name: request.GET.get(name, "").strip() for name in ("a", "b")}
    if not raw["a"] and not raw["b"]:
        return render(request, "datasets/version_diff.html", {"choices": choices, "raw": raw})
    chosen = {}
    for name, value in raw.items():
        if not value:
            return _bad_request(request, f"{name}: name a version to compare (a version id)")
        if not value.isdigit():
            return _bad_request(request, f"{name}: {value!r} is not a version id (a whole number)")
        chosen[name] = DatasetVersion.objects.select_related("dataset").filter(pk=int(value)).first()
        if chosen[name] is None:
            return _bad_request(request, f"{name}: there is no dataset version #{value}")
    diff = diff_versions(chosen["a"], chosen["b"])
    return render(request, "datasets/version_diff.html", {"choices": choices, "raw": raw, "diff": diff})


class ComposeForm(forms.Form):
    """Up to MAX_SOURCES (source version, count) rows, a seed and a note."""

    seed = forms.IntegerField(min_value=0, initial=0, help_text="The same seed gives the same sample and order")
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, versions, **kwargs):
        super().__init__(*args, **kwargs)
        self.versions = {v.pk: v for v in versions}
        options = [("", "—")] + [(v.pk, f"{v.dataset.name} v{v.number} · {v.example_count:,} examples")
                                 for v in versions]
        for i in range(1, MAX_SOURCES + 1):
            self.fields[f"source_{i}"] = forms.IntegerField(
                required=False, min_value=1, label=f"Source {i}", widget=forms.Select(choices=options))
            self.fields[f"count_{i}"] = forms.IntegerField(required=False, min_value=1, label=f"Count {i}")
        self.order_fields([f"{kind}_{i}" for i in range(1, MAX_SOURCES + 1) for kind in ("source", "count")])

    def rows(self):
        """(source field, count field) pairs, for the template."""
        return [(self[f"source_{i}"], self[f"count_{i}"]) for i in range(1, MAX_SOURCES + 1)]

    def clean(self):
        data = super().clean()
        self.parts = []
        for i in range(1, MAX_SOURCES + 1):
            source, count = f"source_{i}", f"count_{i}"
            if source in self.errors or count in self.errors:
                continue
            pk, n = data.get(source), data.get(count)
            if pk is None and n is None:
                continue
            if pk is None:
                self.add_error(source, "choose the version this count is taken from")
            elif pk not in self.versions:
                self.add_error(source, f"there is no dataset version #{pk}")
            elif n is None:
                self.add_error(count, f"how many examples to take from {self.versions[pk]}")
            elif n > self.versions[pk].example_count:
                self.add_error(count, f"{self.versions[pk]} has {self.versions[pk].example_count:,} examples; "
                                      f"cannot take {n:,}")
            else:
                self.parts.append((self.versions[pk], n))
        if not self.parts and not self.errors:
            self.add_error("source_1", "choose at least one source version and a count")
        return data


@permission_required("datasets.freeze_version", raise_exception=True)
def version_compose(request, name):
    dataset = get_object_or_404(Dataset, name=name)
    versions = list(DatasetVersion.objects.select_related("dataset").order_by("dataset__name", "-number"))
    if request.method != "POST":
        initial = {key: value for key, value in request.GET.items() if key.startswith(("source_", "count_"))}
        form = ComposeForm(initial=initial, versions=versions)
        return render(request, "datasets/version_compose.html", {"dataset": dataset, "form": form})
    form = ComposeForm(request.POST, versions=versions)
    large = form.is_valid() and sum(count for _, count in form.parts) > settings.COMPOSE_IN_REQUEST_MAX
    if large:
        # Minutes of work at stage-3 scale (600k + 200k): a page request would time out, a job does not.
        params = {"dataset": dataset.name, "parts": [[v.pk, count] for v, count in form.parts],
                  "seed": form.cleaned_data["seed"], "note": form.cleaned_data["note"]}
        job = launching.launch("compose_version", params, user=request.user,
                               label=f"Compose a version of {dataset.name}")
        messages.info(request, f"That is a large composition: job #{job.pk} composes it.")
        return redirect("job_detail", pk=job.pk)
    if form.is_valid():
        try:
            version = compose_version(dataset, form.parts, seed=form.cleaned_data["seed"], user=request.user,
                                      note=form.cleaned_data["note"])
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            provenance = version.provenance
            messages.success(request, f"Composed {version}: {version.example_count:,} examples "
                                      f"({provenance['duplicates_dropped']:,} duplicates dropped, "
                                      f"{provenance['copied_examples']:,} copied from other datasets).")
            if provenance.get("format_warning"):
                messages.warning(request, provenance["format_warning"])
            _say_if_same_content(request, version)
            return redirect("version_detail", pk=version.pk)
    return render(request, "datasets/version_compose.html", {"dataset": dataset, "form": form}, status=400)


@require_POST
@permission_required("datasets.freeze_version", raise_exception=True)
def dataset_freeze(request, name):
    dataset = get_object_or_404(Dataset, name=name)
    note = request.POST.get("note", "").strip()[:2000]
    try:
        version = freeze_all_examples(dataset, user=request.user, note=note)
    except ValueError as exc:
        return _bad_request(request, str(exc))
    messages.success(request, f"Froze {version}: {version.example_count:,} examples.")
    _say_if_same_content(request, version)
    return redirect("version_detail", pk=version.pk)


def _say_if_same_content(request, version):
    same = same_content_as(version)
    if same is not None:
        messages.warning(request, f"{version} has the same content as {same} (content hash "
                                  f"{version.content_hash[:12]}…): nothing changed since then.")

