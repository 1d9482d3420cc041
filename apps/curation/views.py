"""Review pages: thin views over apps.curation.queues, .review and .resolution."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.core.counting import fast_count
from apps.curation import queues, resolution, review
from apps.curation.coldstart import cold_start_text, split_for_editing
from apps.curation.forms import AdjudicationForm, FreezeForm, QueueForm
from apps.curation.models import Annotation, ReviewItem, ReviewQueue
from apps.datasets.versions import format_warning
from apps.rollouts.groups import word_diff
from apps.rollouts.rendering import render_markdown, shown_text

READABILITY = [(1, "unreadable"), (2, "hard"), (3, "fair"), (4, "clear"), (5, "very clear")]


@permission_required("curation.view_reviewqueue", raise_exception=True)
def queue_list(request):
    decided = Count("items", filter=~Q(items__final_verdict=""))
    all_queues = ReviewQueue.objects.select_related("target_dataset").annotate(item_count=Count("items"),
                                                                              decided_count=decided)
    mine = {row["item__queue"]: row for row in Annotation.objects.filter(annotator=request.user)
            .values("item__queue").annotate(assigned=Count("id"), pending=Count("id", filter=Q(verdict="pending")))}
    for queue in all_queues:
        queue.mine = mine.get(queue.pk)
    return render(request, "curation/queues.html", {"queues": all_queues})


@permission_required("curation.add_reviewqueue", raise_exception=True)
def queue_create(request):
    """GET review/new?<rollout filter>: the form, with what the filter matches; POST builds the queue."""
    can_create = request.user.has_perm("datasets.add_dataset")
    if request.method == "POST":
        form = QueueForm(request.POST, can_create_dataset=can_create)
        if form.is_valid():
            data = form.cleaned_data
            try:
                queue = queues.build_queue(
                    name=data["name"], annotators=data["annotators"], overlap=data["overlap"], user=request.user,
                    source=data["source"], source_filter=QueryDict(data["filter_query"]),
                    import_job=data["import_job"].pk if data["import_job"] else None, limit=data["limit"],
                    guidelines=data["guidelines"], target_dataset=data["target_dataset"],
                    new_dataset=data.get("new_dataset", ""), suggested_tags=data["suggested_tags"],
                    seed=form.queue_seed,
                )
            except queues.QueueError as exc:
                field = exc.field if exc.field in form.fields and exc.field != "filter_query" else None
                form.add_error(field, exc.message if field else f"{exc.field}: {exc.message}")
            else:
                messages.success(request, f"Queue {queue.name} built: {queue.items.count():,} items, "
                                          f"{queue.assigned_count:,} assignments.")
                return redirect("queue_detail", pk=queue.pk)
        source_filter = queues.saved_filter(QueryDict(request.POST.get("filter_query", "")))
        status = 400
    else:
        source_filter = queues.saved_filter(request.GET)
        # ?import_job=<id> (from an ingest's page) starts on that import; anything else is a rollout filter.
        import_job = request.GET.get("import_job", "")
        form = QueueForm(initial={"filter_query": urlencode(source_filter), "import_job": import_job or None,
                                  "source": "import" if import_job else "filter"}, can_create_dataset=can_create)
        status = 200
    context = {"form": form, "source_filter": source_filter}
    try:
        context["matching"] = fast_count(queues.filtered_rollouts(source_filter), bool(source_filter))
    except queues.QueueError as exc:
        context["filter_error"] = str(exc)
    return render(request, "curation/new.html", context, status=status)


@permission_required("curation.view_reviewqueue", raise_exception=True)
def queue_detail(request, pk):
    queue = get_object_or_404(ReviewQueue.objects.select_related("target_dataset", "created_by"), pk=pk)
    fleiss, pairs = queues.queue_agreement(queue)
    context = {
        "queue": queue,
        "guidelines": render_markdown(queue.guidelines) if queue.guidelines else None,
        "progress": queues.queue_progress(queue),
        "annotators": queues.annotator_progress(queue),
        "counts": resolution.verdict_counts(queue),
        "to_adjudicate": resolution.needing_adjudication(queue).count(),
        "fleiss": fleiss,
        "pairs": pairs,
        "min_shared": queues.MIN_SHARED_ITEMS,
        "my_pending": review.assigned(queue, request.user).filter(verdict="pending").count(),
        "my_assigned": review.assigned(queue, request.user).count(),
        "filter_query": urlencode(queue.source_filter),
        "versions": queue.target_dataset.versions.filter(provenance__queue=queue.pk)[:10]
        if queue.target_dataset else [],
        "freeze_form": FreezeForm(),
        "freezable": resolution.freezable(queue),
    }
    return render(request, "curation/detail.html", context)


@permission_required("curation.view_reviewqueue", raise_exception=True)
def review_next(request, pk):
    """The annotator's next pending item, or the queue page when there is none."""
    queue = get_object_or_404(ReviewQueue, pk=pk)
    position = review.next_pending_position(queue, request.user)
    if position is not None:
        return redirect("queue_review_item", pk=queue.pk, position=position)
    if review.assigned(queue, request.user).exists():
        messages.success(request, "All your items in this queue are done.")
    else:
        messages.info(request, "No items of this queue are assigned to you.")
    return redirect("queue_detail", pk=queue.pk)


def _assigned_or_refuse(queue, user, position) -> Annotation:
    annotation = review.annotation_at(queue, user, position)
    if annotation is None:
        if review.item_exists(queue, position):
            raise PermissionDenied("This item is not assigned to you.")
        get_object_or_404(ReviewItem, queue=queue, position=position)  # 404
    return annotation


@permission_required(("curation.view_reviewqueue", "rollouts.view_rollout"), raise_exception=True)
def review_item(request, pk, position):
    queue = get_object_or_404(ReviewQueue, pk=pk)
    annotation = _assigned_or_refuse(queue, request.user, position)
    item = annotation.item
    rollout = item.rollout
    original_reasoning, original_summary = split_for_editing(rollout)
    edited = annotation.verdict == Annotation.Verdict.EDIT or annotation.edited_reasoning or annotation.edited_summary
    reasoning = annotation.edited_reasoning if edited else original_reasoning
    summary = annotation.edited_summary if edited else original_summary
    previous, following = review.neighbours(queue, request.user, position)
    mine = review.assigned(queue, request.user)
    context = {
        "queue": queue, "annotation": annotation, "item": item, "rollout": rollout,
        "question": render_markdown((item.prompt or rollout.prompt).question),
        "reasoning_html": render_markdown(rollout.reasoning), "answer_html": render_markdown(rollout.answer),
        "completion": shown_text(rollout.completion),
        "guidelines": render_markdown(queue.guidelines) if queue.guidelines else None,
        "previous": previous, "following": following,
        "index": mine.filter(item__position__lte=position).count(), "total": mine.count(),
        "done": mine.exclude(verdict="pending").count(),
        "edit_reasoning": reasoning, "edit_summary": summary, "editor_open": bool(edited),
        "original": {"reasoning": original_reasoning, "summary": original_summary},
        # What the server holds (a draft or a saved edit), so cancelling knows whether there is a draft to drop.
        "saved_rewrite": {"reasoning": annotation.edited_reasoning, "summary": annotation.edited_summary},
        "preview": cold_start_text(reasoning, summary),
        "readability_choices": READABILITY, "tags": ", ".join(annotation.tags),
        "can_save": request.user.has_perm("curation.change_annotation"),
    }
    return render(request, "curation/review.html", context)


def _state(annotation: Annotation) -> dict:
    """What the client needs to show a saved annotation (theirs, after a conflict)."""
    return {
        "version": annotation.version, "verdict": annotation.verdict, "readability": annotation.readability,
        "edited_reasoning": annotation.edited_reasoning, "edited_summary": annotation.edited_summary,
        "tags": ", ".join(annotation.tags), "notes": annotation.notes,
        "saved_by": annotation.updated_by.username if annotation.updated_by else None,
        "saved_at": timezone.localtime(annotation.updated_at).isoformat(),
    }


@require_POST
@permission_required("curation.change_annotation", raise_exception=True)
def review_save(request, pk, position):
    """Autosave and explicit saves: JSON in, JSON out; 409 with their state on a conflict."""
    queue = get_object_or_404(ReviewQueue, pk=pk)
    annotation = review.annotation_at(queue, request.user, position)
    if annotation is None:
        return JsonResponse({"error": "This item is not assigned to you."}, status=403)
    changes = {field: request.POST[field] for field in review.FIELDS if field in request.POST}
    try:
        saved = review.save_annotation(annotation, request.user, changes, request.POST.get("version"))
    except PermissionDenied as exc:
        return JsonResponse({"error": str(exc) or "You may not annotate."}, status=403)
    except review.InvalidChange as exc:
        return JsonResponse({"error": f"Not saved: {exc}", "field": exc.field}, status=400)
    except review.EditConflict as exc:
        return JsonResponse({"conflict": str(exc), "theirs": _state(exc.current)}, status=409)
    saved.item.refresh_from_db(fields=["final_verdict"])
    return JsonResponse({**_state(saved), "final_verdict": saved.item.final_verdict})


@permission_required("curation.adjudicate", raise_exception=True)
def adjudicate_list(request, pk):
    queue = get_object_or_404(ReviewQueue, pk=pk)
    open_items = list(resolution.needing_adjudication(queue).select_related("rollout")
                      .prefetch_related("annotations__annotator")[:200])
    decided = (queue.items.filter(adjudicated_by__isnull=False).select_related("adjudicated_by")
               .order_by("-adjudicated_at")[:50])
    return render(request, "curation/adjudicate_list.html",
                  {"queue": queue, "open_items": open_items, "decided": decided})


@permission_required("curation.adjudicate", raise_exception=True)
def adjudicate_item(request, pk, position):
    queue = get_object_or_404(ReviewQueue, pk=pk)
    item = get_object_or_404(ReviewItem.objects.select_related("rollout__prompt", "prompt", "adjudicated_by"),
                             queue=queue, position=position)
    form = AdjudicationForm(request.POST or None)
    conflict = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            resolution.adjudicate(item, request.user, data["decision"], data["version"],
                                  reasoning=data["reasoning"], summary=data["summary"])
        except resolution.InvalidDecision as exc:
            form.add_error("decision", str(exc))
        except resolution.AdjudicationConflict as exc:
            conflict = exc
            item = exc.current
        else:
            messages.success(request, f"Item {item.position} decided.")
            following = resolution.needing_adjudication(queue).filter(position__gt=position).first()
            if following:
                return redirect("queue_adjudicate_item", pk=queue.pk, position=following.position)
            return redirect("queue_adjudicate", pk=queue.pk)
    return render(request, "curation/adjudicate_item.html", _adjudication_context(queue, item, form, conflict),
                  status=409 if conflict else (400 if request.method == "POST" else 200))


def _adjudication_context(queue, item, form, conflict):
    rollout = item.rollout
    original_reasoning, original_summary = split_for_editing(rollout)
    annotations = list(item.annotations.select_related("annotator").order_by("annotator__username"))
    for annotation in annotations:
        annotation.decision_value = f"annotation:{annotation.pk}"
        if annotation.verdict == Annotation.Verdict.EDIT:
            annotation.reasoning_diff = word_diff(original_reasoning, annotation.edited_reasoning)
            annotation.summary_diff = word_diff(original_summary, annotation.edited_summary)
            annotation.preview = cold_start_text(annotation.edited_reasoning, annotation.edited_summary)
    first_edit = next((a for a in annotations if a.verdict == Annotation.Verdict.EDIT), None)
    submitted = form.data if form.is_bound else {}
    return {
        "queue": queue, "item": item, "rollout": rollout, "annotations": annotations, "form": form,
        "conflict": conflict,
        "question": render_markdown((item.prompt or rollout.prompt).question),
        "reasoning_html": render_markdown(rollout.reasoning), "answer_html": render_markdown(rollout.answer),
        "completion": shown_text(rollout.completion),
        # The reviewer's own text: what they typed (kept through a conflict), else the first edit, else the original.
        "own_reasoning": submitted.get("reasoning", first_edit.edited_reasoning if first_edit else original_reasoning),
        "own_summary": submitted.get("summary", first_edit.edited_summary if first_edit else original_summary),
        "decision": submitted.get("decision", ""),
        # After a conflict the form carries the fresh version: submitting again is a deliberate overwrite.
        "version": item.version,
    }


@require_POST
@permission_required("datasets.freeze_version", raise_exception=True)
def queue_freeze(request, pk):
    queue = get_object_or_404(ReviewQueue.objects.select_related("target_dataset"), pk=pk)
    form = FreezeForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        version = resolution.freeze_queue(queue, request.user, note=note)
    except ValueError as exc:  # nothing accepted yet, or a refusal from freeze_version itself
        messages.error(request, str(exc))
    else:
        messages.success(request, resolution.freeze_message(version))
        warning = format_warning([version])  # accepted R1-Zero rollouts beside chat-format rewrites, say
        if warning:
            messages.warning(request, warning)
    return redirect(reverse("queue_detail", args=[queue.pk]))
