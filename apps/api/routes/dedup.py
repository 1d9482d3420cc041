"""De-duplication runs over the API: read a run and its clusters, keep or drop, write the clean version.
A run is made by the `deduplicate` job (POST /jobs)."""

from datetime import datetime
from typing import Literal

from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from apps.api.auth import require_perm
from apps.api.paging import page
from apps.api.responses import READ_ONE, WRITE
from apps.api.routes.versions import version_by_id
from apps.api.schemas import Page, PageQuery, RowId, Text, VersionOut
from apps.dedup import decisions
from apps.dedup.detection import example_text
from apps.dedup.models import ClusterMember, DedupRun, DuplicateCluster

router = Router(tags=["dedup"])

RUNS = DedupRun.objects.select_related("version__dataset").prefetch_related("against")
MAX_TEXT = 2000  # characters of each member's text in a cluster listing


class RunOut(Schema):
    id: int
    job: int | None = Field(description="The deduplicate job that found the clusters")
    version: int = Field(description="The version de-duplicated")
    against: list[int] = Field(description="Earlier versions it was checked against (empty: within the version)")
    scope: Literal["within", "across"]
    method: Literal["exact", "near"]
    threshold: float = Field(description="Least estimated Jaccard similarity of word 5-shingles (near)")
    rule: Literal["first", "shortest", "longest"] = Field(description="Which member is a cluster's representative")
    examples_checked: int
    cluster_count: int
    duplicate_count: int = Field(description="Members of the version that are not their cluster's representative")
    decisions: dict = Field(description="Members kept, dropped, undecided; clusters by decision")
    output_version: int | None = Field(description="The version written without the dropped examples")
    dropped_count: int
    finished_at: datetime | None

    @staticmethod
    def resolve_job(obj):
        return obj.job_id

    @staticmethod
    def resolve_version(obj):
        return obj.version_id

    @staticmethod
    def resolve_against(obj):
        return [v.pk for v in obj.against.all()]

    @staticmethod
    def resolve_decisions(obj):
        return decisions.decision_counts(obj)

    @staticmethod
    def resolve_output_version(obj):
        return obj.output_version_id


class MemberOut(Schema):
    id: int
    example: int
    version: int = Field(description="The version the example was found in (the run's own or an earlier one)")
    position: int
    similarity: float = Field(description="To the representative (1.0: the same normalised text)")
    is_representative: bool
    keep: bool | None = Field(description="null until the rule or a person decides")
    text: str = Field(description=f"The start of the example's text (up to {MAX_TEXT} characters)")

    @staticmethod
    def resolve_example(obj):
        return obj.example_id

    @staticmethod
    def resolve_version(obj):
        return obj.version_id

    @staticmethod
    def resolve_text(obj):
        return example_text(obj.example.messages)[:MAX_TEXT]


class ClusterOut(Schema):
    id: int
    number: int
    kind: Literal["exact", "near"]
    size: int
    representative: int = Field(description="The representative's example id")
    decision: Literal["undecided", "rule", "person"]
    members: list[MemberOut]

    @staticmethod
    def resolve_representative(obj):
        return obj.representative_id

    @staticmethod
    def resolve_members(obj):
        return list(obj.members.all())


class ClusterPage(Page):
    items: list[ClusterOut]


class ClusterQuery(PageQuery):
    kind: Literal["exact", "near"] | None = None


class ClusterDecision(Schema):
    id: RowId = Field(description="A cluster of this run")
    keep: Literal["all", "representative"]


class MemberDecision(Schema):
    id: RowId = Field(description="A member of this run's version")
    keep: bool


class DecideIn(Schema):
    apply_rule: bool = Field(False, description="Decide every undecided cluster by the run's rule (after the rest)")
    clusters: list[ClusterDecision] = Field([], max_length=1000)
    members: list[MemberDecision] = Field([], max_length=1000)


class WriteIn(Schema):
    note: Text = Field("", max_length=2000)


def run_by_id(pk: int) -> DedupRun:
    return get_object_or_404(RUNS, pk=pk)


@router.get("/dedup/runs/{run_id}", response={200: RunOut, **READ_ONE}, summary="A de-duplication run")
def get_dedup_run(request, run_id: int):
    require_perm(request, "dedup.view_deduprun")
    return run_by_id(run_id)


@router.get("/dedup/runs/{run_id}/clusters", response={200: ClusterPage, **READ_ONE},
            summary="A run's clusters with their members, representative first")
def list_dedup_clusters(request, run_id: int, query: Query[ClusterQuery]):
    require_perm(request, "dedup.view_deduprun")
    run = run_by_id(run_id)
    members = ClusterMember.objects.select_related("example").order_by("-is_representative", "version_id",
                                                                       "position")
    clusters = DuplicateCluster.objects.filter(run=run).prefetch_related(Prefetch("members", queryset=members))
    if query.kind:
        clusters = clusters.filter(kind=query.kind)
    return page(clusters, query.after, query.limit, field="number", descending=False)


@router.post("/dedup/runs/{run_id}/decide", response={200: RunOut, **WRITE}, summary="Keep or drop duplicates",
             description="Needs `dedup.decide_duplicates`. Per cluster (`keep`: `all`, or `representative` and drop "
                         "the rest of the version's members), per member (`keep`: true or false), and/or "
                         "`apply_rule` for every cluster still undecided. Only members of the run's own version "
                         "can be decided.")
def decide_duplicates(request, run_id: int, payload: DecideIn):
    require_perm(request, "dedup.decide_duplicates")
    run = run_by_id(run_id)
    clusters = DuplicateCluster.objects.select_related("run__version").in_bulk(
        [c.id for c in payload.clusters])
    members = ClusterMember.objects.select_related("cluster__run__version", "version").in_bulk(
        [m.id for m in payload.members])
    errors = {}
    missing = [c.id for c in payload.clusters if c.id not in clusters or clusters[c.id].run_id != run.pk]
    if missing:
        errors["clusters"] = f"No cluster {', '.join(map(str, missing))} in run #{run.pk}"
    missing = [m.id for m in payload.members if m.id not in members or members[m.id].cluster.run_id != run.pk]
    if missing:
        errors["members"] = f"No member {', '.join(map(str, missing))} in run #{run.pk}"
    earlier = [m.id for m in payload.members if m.id in members and members[m.id].version_id != run.version_id]
    if earlier and "members" not in errors:
        errors["members"] = (f"Members {', '.join(map(str, earlier))} are examples of an earlier version: only "
                             f"those of {run.version} can be kept or dropped")
    if errors:
        raise ValidationError(errors)
    for choice in payload.clusters:
        decisions.decide_cluster(clusters[choice.id], choice.keep, user=request.user, via="api")
    for choice in payload.members:
        decisions.decide_member(members[choice.id], choice.keep, user=request.user, via="api")
    if payload.apply_rule:
        decisions.apply_rule(run, user=request.user, via="api")
    return run_by_id(run_id)


@router.post("/dedup/runs/{run_id}/write", response={201: VersionOut, **WRITE},
             summary="Write a new version without the dropped examples",
             description="Needs `dedup.decide_duplicates` and `datasets.freeze_version`. The version's note and "
                         "provenance say how many were dropped and why (exact or near, by the rule or a person); "
                         "422 if nothing is marked drop.")
def write_clean_version(request, run_id: int, payload: WriteIn):
    require_perm(request, "dedup.decide_duplicates")
    require_perm(request, "datasets.freeze_version")
    run = run_by_id(run_id)
    try:
        version = decisions.write_clean_version(run, user=request.user, note=payload.note, via="api")
    except ValueError as exc:
        raise ValidationError({"run": str(exc)}) from None
    return Status(201, version_by_id(version.pk))
