"""De-duplication pages: a version's runs and the launch form, one run's clusters with keep/drop."""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.datasets.models import DatasetVersion
from apps.dedup import decisions
from apps.dedup.detection import DedupParamsForm, example_text
from apps.dedup.models import ClusterMember, DedupRun, DuplicateCluster
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts.rendering import shown_text

CLUSTERS_PER_PAGE = 20
SHOWN_CHARS = 3000  # of each member's text on the cluster page; the version page has the rest


def _bad_request(request, message: str):
    return render(request, "error.html", {"message": message}, status=400)


@permission_required("dedup.view_deduprun", raise_exception=True)
def version_dedup(request, pk):
    """A version's de-duplication runs, and the form that launches one."""
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), pk=pk)
    form = DedupParamsForm(initial={"version": version.pk})
    status = 200
    if request.method == "POST":
        if not request.user.has_perm("jobs.launch_job"):
            raise PermissionDenied("launching a de-duplication needs the jobs.launch_job permission")
        form = DedupParamsForm(_with_version(request, version))
        if form.is_valid():
            params = {"version": version.pk, "against": [v.pk for v in form.cleaned_data["against"]],
                      **{k: form.cleaned_data[k] for k in ("method", "threshold", "rule")}}
            job = launching.launch_for_form(request, form, "deduplicate", params, label=f"De-duplicate {version}")
            if job is not None:
                return redirect("version_dedup", pk=version.pk)
        status = 400
    form.fields["against"].queryset = form.fields["against"].queryset.exclude(pk=version.pk).order_by(
        "dataset__name", "-number")
    runs = DedupRun.objects.filter(version=version).select_related("job", "output_version").prefetch_related("against")
    pending = Job.objects.filter(kind="deduplicate", params__version=version.pk, dedup_run__isnull=True,
                                 status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).order_by("-pk")
    return render(request, "dedup/version.html",
                  {"version": version, "form": form, "runs": runs, "pending": pending}, status=status)


def _with_version(request, version):
    data = request.POST.copy()
    data["version"] = str(version.pk)
    return data


def _cluster_rows(run: DedupRun):
    members = ClusterMember.objects.select_related("example", "version").order_by(
        "-is_representative", "version_id", "position")
    return (DuplicateCluster.objects.filter(run=run).select_related("representative", "decided_by")
            .prefetch_related(Prefetch("members", queryset=members)))


def _prepare(cluster: DuplicateCluster, run: DedupRun) -> DuplicateCluster:
    for member in cluster.members.all():
        text = example_text(member.example.messages)
        member.text, cut = shown_text(text[:SHOWN_CHARS])
        member.cut = cut or len(text) > SHOWN_CHARS
        member.earlier = member.version_id != run.version_id
    return cluster


@permission_required("dedup.view_deduprun", raise_exception=True)
def run_detail(request, pk):
    run = get_object_or_404(DedupRun.objects.select_related("version__dataset", "job", "output_version"), pk=pk)
    kind = request.GET.get("kind", "")
    if kind not in ("", *DuplicateCluster.Kind.values):
        return _bad_request(request, f"kind: {kind!r} is not one of exact, near")
    clusters = _cluster_rows(run)
    if kind:
        clusters = clusters.filter(kind=kind)
    try:
        page = keyset_page(clusters, request.GET.get("after"), CLUSTERS_PER_PAGE, field="number", descending=False)
    except ValueError as exc:
        return _bad_request(request, f"after: {exc}")
    for cluster in page.items:
        _prepare(cluster, run)
    context = {"run": run, "page": page, "kind": kind,
               "can_decide": request.user.has_perm("dedup.decide_duplicates")}
    if request.htmx and request.GET.get("after"):
        return render(request, "dedup/_clusters.html", context)
    context["counts"] = decisions.decision_counts(run)
    context["can_write"] = context["can_decide"] and request.user.has_perm("datasets.freeze_version")
    return render(request, "dedup/run.html", context)


def _render_cluster(request, cluster: DuplicateCluster, status: int = 200):
    run = cluster.run
    cluster = _prepare(_cluster_rows(run).get(pk=cluster.pk), run)
    return render(request, "dedup/_cluster.html", {"cluster": cluster, "run": run, "can_decide": True}, status=status)


@require_POST
@permission_required("dedup.decide_duplicates", raise_exception=True)
def member_decide(request, pk):
    member = get_object_or_404(ClusterMember.objects.select_related("cluster__run__version", "version"), pk=pk)
    keep = request.POST.get("keep")
    if keep not in ("1", "0"):
        return HttpResponseBadRequest("keep must be 1 (keep) or 0 (drop)")
    try:
        decisions.decide_member(member, keep == "1", user=request.user)
    except decisions.DecisionError as exc:
        return _bad_request(request, str(exc))
    if request.htmx:
        return _render_cluster(request, member.cluster)
    return redirect(member.cluster.run)


@require_POST
@permission_required("dedup.decide_duplicates", raise_exception=True)
def cluster_decide(request, pk):
    cluster = get_object_or_404(DuplicateCluster.objects.select_related("run__version"), pk=pk)
    try:
        decisions.decide_cluster(cluster, request.POST.get("keep", ""), user=request.user)
    except decisions.DecisionError as exc:
        return _bad_request(request, str(exc))
    if request.htmx:
        return _render_cluster(request, cluster)
    return redirect(cluster.run)


@require_POST
@permission_required("dedup.decide_duplicates", raise_exception=True)
def apply_rule(request, pk):
    run = get_object_or_404(DedupRun, pk=pk)
    decided = decisions.apply_rule(run, user=request.user)
    messages.success(request, f"The rule '{run.get_rule_display()}' decided {decided:,} clusters.")
    return redirect(run)


@require_POST
@permission_required("dedup.decide_duplicates", raise_exception=True)
@permission_required("datasets.freeze_version", raise_exception=True)
def write_version(request, pk):
    run = get_object_or_404(DedupRun.objects.select_related("version__dataset"), pk=pk)
    try:
        version = decisions.write_clean_version(run, user=request.user, note=request.POST.get("note", "")[:2000])
    except ValueError as exc:
        return _bad_request(request, str(exc))
    messages.success(request, f"Froze {version}: {version.example_count:,} examples, {run.dropped_count:,} "
                              "duplicates left out.")
    return redirect("version_detail", pk=version.pk)
