import uuid
from pathlib import Path
from urllib.parse import urlencode

from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django_htmx.http import push_url

from apps.core.counting import fast_count
from apps.core.uploads import discard_upload, save_upload
from apps.datasets.models import Dataset
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts import groups, tokens
from apps.rollouts.browse import RolloutFilterForm
from apps.rollouts.ingest import IngestFileError, IngestUploadForm, detect_ingest_format, preview_source
from apps.rollouts.models import Rollout, RolloutTokens
from apps.rollouts.rendering import render_markdown, shown_text
from workers.rewards.shape import flag_labels

RAW_FIELDS = ("completion", "reasoning", "answer", "prompt_text")
OTHER_CHECKPOINTS = 20


@permission_required("rollouts.view_rollout", raise_exception=True)
def rollout_list(request):
    form = RolloutFilterForm(request.GET)
    context = {"form": form, "query": _query_without(request.GET, "after", "before")}
    if not form.is_valid():
        return render(request, "rollouts/list.html", context, status=400)
    try:
        context["page"] = form.page(request.GET.get("after"), before=request.GET.get("before"))
    except ValueError as exc:
        context["bad_cursor"] = str(exc)
        return render(request, "rollouts/list.html", context, status=400)
    if not request.htmx:
        return render(request, "rollouts/list.html", context)
    response = render(request, "rollouts/_results.html", context)
    # The form sends every field; the address bar gets only the ones set, so a shared link stays readable.
    shown = _query_without(request.GET)
    return push_url(response, f"{request.path}?{shown}" if shown else request.path)


@permission_required("rollouts.view_rollout", raise_exception=True)
def rollout_count(request):
    form = RolloutFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse("", status=400)
    return render(request, "rollouts/_count.html", {"count": fast_count(form.rollouts(), form.is_filtered())})


@permission_required(("rollouts.view_rollout", "curation.view_annotation"), raise_exception=True)
def rollout_detail(request, pk):
    rollout = get_object_or_404(Rollout.objects.select_related("prompt__dataset", "job", "model_version"), pk=pk)
    others = (
        Rollout.objects.filter(prompt_id=rollout.prompt_id).exclude(pk=rollout.pk)
        .exclude(model_version_id=rollout.model_version_id).select_related("model_version")
        .only("job_id", "step", "total_reward", "is_correct", "model_version__name", "model_version__step")
        .order_by("-pk")[:OTHER_CHECKPOINTS]
    )
    items = rollout.review_items.select_related("queue").prefetch_related("annotations__annotator").order_by("pk")
    annotations = [annotation for item in items for annotation in item.annotations.all()]
    for annotation in annotations:
        annotation.shown_notes = annotation.notes_for(request.user)
    context = {
        "rollout": rollout,
        "prompt": render_markdown(rollout.prompt_text or rollout.prompt.question),
        "reasoning": render_markdown(rollout.reasoning),
        "answer": render_markdown(rollout.answer),
        "completion": shown_text(rollout.completion),
        "components": _components(rollout.rewards),
        "flags": flag_labels(rollout.shape_flags),
        "others": others,
        "annotations": annotations,
        "lens": _lens(rollout.pk),
    }
    return render(request, "rollouts/detail.html", context)


def _lens(rollout_id: int):
    stored = RolloutTokens.objects.filter(rollout_id=rollout_id).first()
    return tokens.lens(stored) if stored else None


@permission_required("rollouts.view_rollout", raise_exception=True)
def rollout_raw(request, pk):
    """One text field of a rollout in full, as plain text: the way to see past the page's cut."""
    field = request.GET.get("field", "completion")
    if field not in RAW_FIELDS:
        return HttpResponse(f"field must be one of {', '.join(RAW_FIELDS)}", status=400, content_type="text/plain")
    text = get_object_or_404(Rollout.objects.values_list(field, flat=True), pk=pk)
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


@permission_required("rollouts.view_rollout", raise_exception=True)
def rollout_group(request, pk):
    rollout = get_object_or_404(Rollout.objects.select_related("prompt", "job"), pk=pk)
    members = groups.group_of(rollout)
    for member in members:
        member.shown_answer = render_markdown(member.answer)
        member.shown_completion = shown_text(member.completion)[0][:3000]
        member.component_list = _components(member.rewards)
    alignment = tokens.aligned_group(members)
    return render(request, "rollouts/group.html", {"rollout": rollout, "members": members, "alignment": alignment})


@permission_required("rollouts.view_rollout", raise_exception=True)
def rollout_diff(request):
    try:
        old, new = (int(request.GET.get(name, "")) for name in ("a", "b"))
    except ValueError:
        return render(request, "error.html", {"message": "a and b must be rollout ids"}, status=400)
    old, new = get_object_or_404(Rollout, pk=old), get_object_or_404(Rollout, pk=new)
    context = {"old": old, "new": new, "diff": groups.word_diff(old.completion, new.completion)}
    return render(request, "rollouts/_diff.html" if request.htmx else "rollouts/diff.html", context)


def _components(rewards: dict) -> list[dict]:
    """The reward breakdown as rows: name, value, weight, weighted value and the component's own details."""
    rows = []
    for name, component in sorted(rewards.items()):
        if not isinstance(component, dict):
            component = {"value": component}
        value, weight = component.get("value"), component.get("weight", 1.0)
        weighted = value * weight if isinstance(value, int | float) and isinstance(weight, int | float) else None
        details = component.get("details") or {}
        rows.append({"name": name, "value": value, "weight": weight, "weighted": weighted,
                     "details": details if isinstance(details, dict) else {"details": details}})
    return rows


def _query_without(params, *names) -> str:
    """The query string without `names` and without empty fields."""
    return urlencode([(key, value) for key, value in params.items() if value != "" and key not in names])


HELD_UPLOADS = "ingest_uploads"  # session key: preview token → the upload it previewed (path, name)


@permission_required("rollouts.add_rollout", raise_exception=True)
def rollout_ingest(request):
    """Upload rollouts from another trainer: a preview of what each column becomes, then (with the options
    checked) an ingest_rollouts job that validates and writes them."""
    held_uploads = request.session.get(HELD_UPLOADS, {})
    token = request.POST.get("upload", "")
    held = held_uploads.get(token)
    preview = None
    if request.method == "POST":
        form = IngestUploadForm(request.POST, request.FILES, held=held is not None)
        upload_error = getattr(request, "upload_error", None)
        if upload_error:
            form.add_error("file", upload_error)
        elif form.is_valid():
            data = form.cleaned_data
            if data["file"]:  # a new file replaces the one held
                if held:
                    discard_upload(held["path"])
                token, held = uuid.uuid4().hex, {"path": str(save_upload(data["file"])), "name": data["file"].name}
                held_uploads[token] = held
            path = Path(held["path"])
            fmt = data["format"] or detect_ingest_format(path)
            if request.POST.get("action") == "ingest":
                job = launching.launch_for_form(request, form, "ingest_rollouts", form.job_params(path, fmt),
                                                label=f"Ingest {held['name']} into {data['dataset'].name}")
                if job:  # the job owns the upload now, and deletes it when it ends
                    held_uploads.pop(token, None)
                    request.session[HELD_UPLOADS] = held_uploads
                    return redirect("job_detail", pk=job.pk)
            else:
                try:
                    preview = preview_source(path, fmt, **form.preview_options())
                except IngestFileError as exc:
                    form.add_error("file", str(exc))
                    discard_upload(held_uploads.pop(token)["path"])
                    token, held = "", None
            request.session[HELD_UPLOADS] = held_uploads
    else:
        form = IngestUploadForm(initial={"dataset": Dataset.objects.filter(name=request.GET.get("dataset")).first()})
    recent = Job.objects.filter(kind="ingest_rollouts").select_related("created_by")[:5]
    status = 400 if request.method == "POST" and not form.is_valid() else 200
    context = {"form": form, "recent": recent, "preview": preview, "upload": token if held else "", "held": held}
    return render(request, "rollouts/ingest.html", context, status=status)
