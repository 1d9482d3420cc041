from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import push_url

from apps.core.pagination import keyset_page
from apps.core.uploads import save_upload
from apps.datasets.forms import DatasetForm, UploadForm
from apps.datasets.importing import PROMPT_KINDS
from apps.datasets.models import Dataset, DatasetVersion, Example, Prompt
from apps.datasets.prompt_kind import PromptFilterForm, filter_prompts, kind_counts, mark_prompts
from apps.jobs import launching
from apps.jobs.models import Job


def _count_of(model):
    """A dataset's rows of `model`, as a scalar subquery: three Counts over joins would multiply
    prompts by examples by versions; each subquery reads one index range of its own table."""
    rows = model.objects.filter(dataset=OuterRef("pk")).order_by().values("dataset").annotate(n=Count("*"))
    return Coalesce(Subquery(rows.values("n"), output_field=IntegerField()), 0)


def with_counts(datasets):
    """Datasets with prompt_count, example_count and version_count, in the one query of the list."""
    return datasets.annotate(prompt_count=_count_of(Prompt), example_count=_count_of(Example),
                             version_count=_count_of(DatasetVersion))


@permission_required("datasets.view_dataset", raise_exception=True)
def dataset_list(request):
    datasets = with_counts(Dataset.objects.all())
    query = request.GET.get("q", "").strip()
    if query:
        datasets = datasets.filter(name__icontains=query)
    return render(request, "datasets/list.html", {"datasets": datasets, "form": DatasetForm(), "q": query})


@require_POST
@permission_required("datasets.add_dataset", raise_exception=True)
def dataset_create(request):
    form = DatasetForm(request.POST)
    if form.is_valid():
        dataset = form.save(commit=False)
        dataset.created_by = request.user
        dataset.save()
        return redirect("dataset_detail", name=dataset.name)
    return render(request, "datasets/list.html", {"datasets": with_counts(Dataset.objects.all()), "form": form},
                  status=400)


@permission_required(("datasets.view_dataset", "datasets.view_prompt"), raise_exception=True)
def dataset_detail(request, name):
    dataset = get_object_or_404(Dataset, name=name)
    shown = PromptFilterForm(request.GET)
    if not shown.is_valid():
        return render(request, "error.html", {"message": _first_error(shown)}, status=400)
    prompts = filter_prompts(dataset.prompts.all(), **shown.cleaned_data)
    try:
        page = keyset_page(prompts, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    context = {"dataset": dataset, "page": page, "q": shown.cleaned_data["q"], "shown": shown,
               "filter_query": urlencode({k: v for k, v in shown.cleaned_data.items() if v})}
    if request.htmx:
        # The form sends every field; the address bar gets only those set, so a shared link stays readable.
        return push_url(render(request, "datasets/_prompt_rows.html", context),
                        f"{request.path}?{context['filter_query']}" if context["filter_query"] else request.path)
    context["imports"] = dataset_imports(dataset)
    context["kind_counts"] = kind_counts(dataset)
    return render(request, "datasets/detail.html", context)


def _first_error(form) -> str:
    field, errors = next(iter(form.errors.items()))
    return f"{field}: {errors[0]}"


@require_POST
@permission_required("datasets.change_prompt", raise_exception=True)
def dataset_mark_prompts(request, name):
    """Mark every prompt the page's filter shows (search, kind, domain) as reasoning or non-reasoning."""
    dataset = get_object_or_404(Dataset, name=name)
    shown = PromptFilterForm(request.POST)
    mark = request.POST.get("mark")
    if not shown.is_valid() or mark not in dict(PROMPT_KINDS):
        message = _first_error(shown) if shown.errors else "mark: choose reasoning or non_reasoning"
        return render(request, "error.html", {"message": message}, status=400)
    prompts = filter_prompts(dataset.prompts.all(), **shown.cleaned_data)
    done = mark_prompts(dataset, prompts, mark == "reasoning", user=request.user, **shown.cleaned_data)
    messages.success(request, f"Marked {done['changed']} of {done['matched']} prompts {mark.replace('_', '-')}.")
    query = urlencode({k: v for k, v in shown.cleaned_data.items() if v})
    return redirect(reverse("dataset_detail", args=[dataset.name]) + (f"?{query}" if query else ""))


def dataset_imports(dataset):
    return Job.objects.filter(kind="import_prompts", params__dataset=dataset.pk)[:5]


@permission_required("datasets.import_prompts", raise_exception=True)
def dataset_import(request, name):
    dataset = get_object_or_404(Dataset, name=name)
    upload_error = None
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        upload_error = getattr(request, "upload_error", None)
        if upload_error:
            form.add_error("file", upload_error)
        elif form.is_valid():
            params = {k: v for k, v in form.cleaned_data.items() if k != "file"}
            params |= {"dataset": dataset.pk, "path": str(save_upload(form.cleaned_data["file"]))}
            job = launching.launch_for_form(request, form, "import_prompts", params,
                                            label=f"Import into {dataset.name}")
            if job:
                return redirect("job_detail", pk=job.pk)
    else:
        form = UploadForm()
    status = 400 if request.method == "POST" else 200
    return render(request, "datasets/import.html", {"dataset": dataset, "form": form}, status=status)
