"""Decontamination pages: launch a check, the checks, one check's matches side by side (decided one by
one with htmx or in bulk), one match, and writing the clean version."""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.datasets.models import DatasetVersion
from apps.decontam import checking
from apps.decontam.models import DecontamCheck, Match
from apps.decontam.shown import highlighted
from apps.jobs import launching
from apps.jobs.models import Job

MATCHES_PER_PAGE = 25
DETAIL_CONTEXT = 2000  # characters around each span on a match's own page


def _bad_request(request, message: str):
    return render(request, "error.html", {"message": message}, status=400)


@permission_required("jobs.launch_job", raise_exception=True)
def decontam_new(request):
    if request.method == "POST":
        form = checking.DecontamParamsForm(request.POST)
        if form.is_valid():
            params = {"version": form.cleaned_data["version"].pk,
                      "benchmarks": [b.pk for b in form.cleaned_data["benchmarks"]]}
            params |= {name: form.cleaned_data[name] for name in ("n", "min_shared", "parts")}
            job = launching.launch_for_form(request, form, "decontaminate", params,
                                            label=f"Decontaminate {form.cleaned_data['version']}")
            if job is not None:
                return redirect("decontam_check", pk=job.pk)
        return render(request, "decontam/new.html", {"form": form}, status=400)
    initial = {key: request.GET[key] for key in ("version", "n") if request.GET.get(key, "").isdigit()}
    form = checking.DecontamParamsForm(initial=initial)
    version = DatasetVersion.objects.filter(pk=initial.get("version")).first() if "version" in initial else None
    return render(request, "decontam/new.html", {"form": form, "version": version})


@permission_required("decontam.view_decontamcheck", raise_exception=True)
def decontam_list(request):
    checks = (DecontamCheck.objects.select_related("job", "version__dataset", "output_version")
              .prefetch_related("benchmarks").order_by("-pk")[:200])
    waiting = (Job.objects.filter(kind="decontaminate", decontam_check__isnull=True)
               .exclude(status__in=Job.FINISHED).order_by("-pk")[:50])
    return render(request, "decontam/list.html", {"checks": checks, "waiting": waiting})


def _with_texts(matches, context=None):
    """Each match's two sides as escaped HTML with the shared spans marked."""
    for match in matches:
        text = checking.part_text(match.example.messages, match.part)
        options = {} if context is None else {"context": context}
        match.example_html = highlighted(text, match.example_spans, **options)
        match.benchmark_html = highlighted(match.benchmark_prompt.question, match.benchmark_spans, **options)
    return matches


MATCH_ROWS = Match.objects.select_related("example", "benchmark_prompt__dataset", "decided_by")


@permission_required("decontam.view_match", raise_exception=True)
def decontam_check(request, pk):
    job = get_object_or_404(Job, pk=pk, kind="decontaminate")
    check = (DecontamCheck.objects.select_related("version__dataset", "output_version", "written_by")
             .prefetch_related("benchmarks").filter(job=job).first())
    context = {"job": job, "check": check}
    if request.htmx:  # the waiting section polling; once the job has ended the whole page is worth reloading
        response = render(request, "decontam/_waiting.html", context)
        if job.is_finished:
            response["HX-Refresh"] = "true"
        return response
    if check is None or job.status != Job.Status.SUCCEEDED:
        return render(request, "decontam/check.html", context)
    decision = request.GET.get("decision", "")
    if decision and decision not in Match.Decision.values:
        return _bad_request(request, f"decision: {decision!r} is not one of {', '.join(Match.Decision.values)}")
    matches = MATCH_ROWS.filter(decontam_check=check)
    if decision:
        matches = matches.filter(decision=decision)
    try:
        page = keyset_page(matches, request.GET.get("after"), MATCHES_PER_PAGE, field="shared_ngrams")
    except ValueError as exc:
        return _bad_request(request, f"after: {exc}")
    context |= {"page": page, "matches": _with_texts(page.items), "decision": decision,
                "decisions": Match.Decision.choices, "counts": checking.counts(check)}
    return render(request, "decontam/check.html", context)


@permission_required("decontam.view_match", raise_exception=True)
def match_detail(request, pk):
    match = get_object_or_404(MATCH_ROWS.select_related("decontam_check__version__dataset"), pk=pk)
    _with_texts([match], context=DETAIL_CONTEXT)
    return render(request, "decontam/match.html", {"match": match, "check": match.decontam_check})


@require_POST
@permission_required("decontam.decide_match", raise_exception=True)
def match_decide(request, pk):
    match = get_object_or_404(Match.objects.select_related("decontam_check"), pk=pk)
    decision = request.POST.get("decision", "")
    try:
        checking.decide(match.decontam_check, [match.pk], decision, request.user)
    except ValueError as exc:
        return _bad_request(request, str(exc))
    if request.htmx:
        match = _with_texts([get_object_or_404(MATCH_ROWS, pk=pk)])[0]
        return render(request, "decontam/_match.html", {"match": match, "check": match.decontam_check})
    messages.success(request, f"Match #{pk} marked {decision}.")
    return redirect("decontam_match", pk=pk)


@require_POST
@permission_required("decontam.decide_match", raise_exception=True)
def check_decide(request, pk):
    """Bulk decisions: the ticked matches, or every pending match with at least k shared n-grams."""
    check = get_object_or_404(DecontamCheck, pk=pk)
    decision = request.POST.get("decision", "")
    try:
        if "min_shared" in request.POST:
            raw = request.POST["min_shared"].strip()
            if not raw.isdigit() or int(raw) < 1:
                return _bad_request(request, f"min_shared: {raw!r} is not a whole number of at least 1")
            changed = checking.decide_at_least(check, int(raw), decision, request.user)
        else:
            ids = request.POST.getlist("match")
            if not ids or not all(i.isdigit() for i in ids):
                return _bad_request(request, "match: tick at least one match (ids are whole numbers)")
            changed = checking.decide(check, [int(i) for i in ids], decision, request.user)
    except ValueError as exc:
        return _bad_request(request, str(exc))
    messages.success(request, f"{changed:,} match(es) marked {decision}.")
    return redirect("decontam_check", pk=pk)


@require_POST
@permission_required("datasets.freeze_version", raise_exception=True)
def check_write(request, pk):
    check = get_object_or_404(DecontamCheck.objects.select_related("job", "version__dataset"), pk=pk)
    try:
        version = checking.write_clean_version(check, request.user, note=request.POST.get("note", "").strip()[:2000])
    except ValueError as exc:
        return _bad_request(request, str(exc))
    messages.success(request, f"Wrote {version}: {version.example_count:,} examples, "
                              f"{check.removed_count:,} removed for confirmed benchmark matches.")
    return redirect("version_detail", pk=version.pk)
