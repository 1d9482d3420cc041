"""Decontamination checks over the API: a check's summary and matches, decisions, and the clean version.
A check is launched like every job: `POST /jobs` with `kind: "decontaminate"`; its id is the job's."""

from datetime import datetime
from typing import Literal

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError
from apps.api.paging import page
from apps.api.responses import READ_ONE, WRITE
from apps.api.schemas import ErrorOut, Limit, RowId, Text, VersionOut
from apps.datasets.models import DatasetVersion
from apps.decontam import checking
from apps.decontam.models import DecontamCheck, Match

router = Router(tags=["decontamination"])

Decision = Literal["pending", "confirmed", "dismissed"]


class CheckOut(Schema):
    id: int = Field(description="The check's id, which is its job's")
    job_status: str
    version: int = Field(description="The dataset version checked")
    benchmarks: list[str] = Field(description="Benchmark dataset names")
    n: int
    min_shared: int
    parts: str
    benchmark_prompts: int
    examples_checked: int
    matched_examples: int
    match_count: int
    pending: int
    confirmed: int
    dismissed: int
    confirmed_examples: int = Field(description="Examples a clean version written now would leave out")
    output_version: int | None = Field(description="The last clean version written from this check")
    removed_count: int


class MatchOut(Schema):
    id: int
    example: int
    position: int = Field(description="The example's position in the checked version")
    part: Literal["prompt", "answer"]
    benchmark: str = Field(description="The benchmark dataset's name")
    benchmark_prompt: int
    shared_ngrams: int
    example_spans: list[list[int]] = Field(description="[start, end) offsets into the example's part text (its "
                                                       "user or assistant turns joined by a blank line)")
    benchmark_spans: list[list[int]] = Field(description="[start, end) offsets into the benchmark prompt's question")
    example_overlap: list[str] = Field(description="The text of each example span")
    benchmark_overlap: list[str] = Field(description="The text of each benchmark span")
    decision: Decision
    decided_by: str | None
    decided_at: datetime | None


class MatchPage(Schema):
    items: list[MatchOut]
    next: str | None
    total: int
    total_is_estimate: bool


class MatchQuery(Schema):
    decision: Decision | None = None
    after: Text | None = Field(None, max_length=200, description="The `next` cursor of the previous page")
    limit: Limit = 50


class DecisionIn(Schema):
    decision: Decision
    match_ids: list[RowId] | None = Field(None, max_length=10_000, description="The matches to decide")
    min_shared: int | None = Field(None, ge=1, le=10_000, description="Or: every pending match sharing at least "
                                                                      "this many n-grams")


class DecisionOut(Schema):
    changed: int
    check: CheckOut


class CleanIn(Schema):
    note: Text = Field("", max_length=2000)


def check_by_id(check_id: int) -> DecontamCheck:
    return get_object_or_404(DecontamCheck.objects.select_related("job"), pk=check_id)


def check_out(check: DecontamCheck) -> dict:
    return {"id": check.pk, "job_status": check.job.status, "version": check.version_id,
            "benchmarks": sorted(check.benchmarks.values_list("name", flat=True)), "n": check.n,
            "min_shared": check.min_shared, "parts": check.parts, "benchmark_prompts": check.benchmark_prompts,
            "examples_checked": check.examples_checked, "matched_examples": check.matched_examples,
            "match_count": check.match_count, "output_version": check.output_version_id,
            "removed_count": check.removed_count} | checking.counts(check)


def match_out(match: Match) -> dict:
    text = checking.part_text(match.example.messages, match.part)
    question = match.benchmark_prompt.question
    return {"id": match.pk, "example": match.example_id, "position": match.position, "part": match.part,
            "benchmark": match.benchmark_prompt.dataset.name, "benchmark_prompt": match.benchmark_prompt_id,
            "shared_ngrams": match.shared_ngrams, "example_spans": match.example_spans,
            "benchmark_spans": match.benchmark_spans,
            "example_overlap": [text[s:e] for s, e in match.example_spans],
            "benchmark_overlap": [question[s:e] for s, e in match.benchmark_spans],
            "decision": match.decision, "decided_by": match.decided_by.username if match.decided_by else None,
            "decided_at": match.decided_at}


@router.get("/decontam/{check_id}", response={200: CheckOut, **READ_ONE},
            summary="A decontamination check: what was checked, and its matches counted by decision")
def get_check(request, check_id: int):
    require_perm(request, "decontam.view_decontamcheck")
    return check_out(check_by_id(check_id))


@router.get("/decontam/{check_id}/matches", response={200: MatchPage, **READ_ONE},
            summary="A check's matches, most shared n-grams first, with the overlapping spans on both sides")
def list_matches(request, check_id: int, query: Query[MatchQuery]):
    require_perm(request, "decontam.view_match")
    check = check_by_id(check_id)
    matches = Match.objects.filter(decontam_check=check).select_related(
        "example", "benchmark_prompt__dataset", "decided_by")
    if query.decision:
        matches = matches.filter(decision=query.decision)
    result = page(matches, query.after, query.limit, field="shared_ngrams")
    return result | {"items": [match_out(m) for m in result["items"]]}


@router.post("/decontam/{check_id}/decisions", response={200: DecisionOut, **WRITE},
             summary="Confirm, dismiss or reset matches: by id, or every pending one with at least k shared n-grams",
             description="Needs `decontam.decide_match`. Send exactly one of `match_ids` and `min_shared`.")
def decide(request, check_id: int, payload: DecisionIn):
    require_perm(request, "decontam.decide_match")
    check = check_by_id(check_id)
    if (payload.match_ids is None) == (payload.min_shared is None):
        raise ValidationError({"match_ids": "Send either match_ids or min_shared (exactly one)"})
    if payload.min_shared is not None:
        if payload.decision == "pending":
            raise ValidationError({"decision": "min_shared decides pending matches: confirmed or dismissed"})
        changed = checking.decide_at_least(check, payload.min_shared, payload.decision, request.user, via="api")
    else:
        ids = set(payload.match_ids)
        found = set(check.matches.filter(pk__in=ids).values_list("pk", flat=True))
        if ids - found:
            raise ValidationError({"match_ids": f"Not matches of check {check.pk}: "
                                                f"{', '.join(map(str, sorted(ids - found)[:20]))}"})
        changed = checking.decide(check, sorted(ids), payload.decision, request.user, via="api")
    return {"changed": changed, "check": check_out(check)}


@router.post("/decontam/{check_id}/clean-version", response={201: VersionOut, 409: ErrorOut, **WRITE},
             summary="Write a new version of the checked one without the examples with confirmed matches",
             description="Needs `datasets.freeze_version`. The version's provenance lists the removed examples with "
                         "their confirmed matches (benchmark, prompt, part, shared n-grams, who confirmed); pending "
                         "matches stay in. 409 while the check's job has not succeeded or when nothing would be left.")
def clean_version(request, check_id: int, payload: CleanIn):
    require_perm(request, "datasets.freeze_version")
    check = check_by_id(check_id)
    try:
        version = checking.write_clean_version(check, request.user, note=payload.note, via="api")
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    return Status(201, DatasetVersion.objects.select_related("dataset", "created_by").get(pk=version.pk))
