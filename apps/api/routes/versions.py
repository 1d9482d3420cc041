from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError
from apps.api.freezing import examples_to_freeze
from apps.api.paging import page
from apps.api.responses import READ_ONE, WRITE
from apps.api.routes.datasets import dataset_by_name
from apps.api.schemas import ComposeIn, DiffOut, ExportQuery, FreezeIn, PageQuery, Slug, VersionOut, VersionPage
from apps.datasets.export import export_response
from apps.datasets.models import DatasetVersion
from apps.datasets.versions import compose_version, diff_versions, freeze_all_examples, freeze_version

router = Router(tags=["versions"])

VERSIONS = DatasetVersion.objects.select_related("dataset", "created_by")


def version_by_id(pk: int) -> DatasetVersion:
    return get_object_or_404(VERSIONS, pk=pk)


@router.get("/datasets/{name}/versions", response={200: VersionPage, **READ_ONE},
            summary="A dataset's versions, newest first")
def list_versions(request, name: Slug, query: Query[PageQuery]):
    require_perm(request, "datasets.view_datasetversion")
    dataset = dataset_by_name(name)
    return page(VERSIONS.filter(dataset=dataset), query.after, query.limit)


@router.get("/versions/{version_id}", response={200: VersionOut, **READ_ONE},
            summary="A version with its provenance, content hash and example count")
def get_version(request, version_id: int):
    require_perm(request, "datasets.view_datasetversion")
    return version_by_id(version_id)


@router.post("/datasets/{name}/versions", response={201: VersionOut, **WRITE},
             summary="Freeze examples into a new immutable version",
             description="Needs `datasets.freeze_version`. Send `example_ids` (kept in that order) or "
                         "`all_examples: true` (every example, by id).")
def freeze(request, name: Slug, payload: FreezeIn):
    require_perm(request, "datasets.freeze_version")
    dataset = dataset_by_name(name)
    if payload.all_examples == (payload.example_ids is not None):
        raise ValidationError({"example_ids": "Send either example_ids or all_examples: true (exactly one)"})
    try:
        if payload.all_examples:
            version = freeze_all_examples(dataset, user=request.user, note=payload.note, via="api")
        else:
            examples = examples_to_freeze(dataset, payload.example_ids)
            version = freeze_version(dataset, examples, user=request.user, note=payload.note,
                                     provenance={"from": "selected examples"}, via="api")
    except ValueError as exc:
        field = "all_examples" if payload.all_examples else "example_ids"
        raise ValidationError({field: str(exc)}) from None
    return Status(201, version_by_id(version.pk))


@router.post("/datasets/{name}/versions/compose", response={201: VersionOut, **WRITE},
             summary="Compose a new version from samples of other versions",
             description="Needs `datasets.freeze_version`. Takes `count` examples (without replacement) from each "
                         "source version, mixes them deterministically for `seed`, keeps each content once, and "
                         "copies examples of other datasets into this one. The provenance names every source.")
def compose(request, name: Slug, payload: ComposeIn):
    require_perm(request, "datasets.freeze_version")
    dataset = dataset_by_name(name)
    sources = VERSIONS.in_bulk([part.version for part in payload.parts])
    missing = [part.version for part in payload.parts if part.version not in sources]
    if missing:
        raise ValidationError({"parts": f"No version with id {', '.join(map(str, missing))}"})
    parts = [(sources[part.version], part.count) for part in payload.parts]
    try:
        version = compose_version(dataset, parts, seed=payload.seed, user=request.user, note=payload.note, via="api")
    except ValueError as exc:
        raise ValidationError({"parts": str(exc)}) from None
    return Status(201, version_by_id(version.pk))


@router.get("/versions/{a}/diff/{b}", response={200: DiffOut, **READ_ONE},
            summary="What changed from version a to version b, by content hash",
            description="Counts of added, removed and kept examples, and the first few added and removed ones.")
def diff(request, a: int, b: int):
    require_perm(request, "datasets.view_datasetversion")
    result = diff_versions(version_by_id(a), version_by_id(b))
    return {"a": a, "b": b, "added": result.added, "removed": result.removed, "kept": result.kept,
            "added_samples": result.added_examples, "removed_samples": result.removed_examples}


EXPORT_CONTENT = {
    "application/x-ndjson": {"schema": {"type": "string", "description": "JSON Lines (messages or raw)"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


@router.get("/versions/{version_id}/export", response={200: None, **WRITE},
            summary="Download a version (streamed): chat JSONL, raw JSONL or Parquet",
            description="Needs `datasets.export_dataset`. `messages`: one `{\"messages\": [...]}` per line; "
                        "`raw`: id, content_hash, source, messages, provenance, question, reference_answer; "
                        "`parquet`: the raw columns (`provenance` as a struct with the same keys, null where one "
                        "is absent). All load with `datasets.load_dataset` as they are. The X-Content-Hash and "
                        "X-Example-Count headers describe the version.",
            openapi_extra={"responses": {200: {"description": "The file, streamed", "content": EXPORT_CONTENT}}})
def export(request, version_id: int, query: Query[ExportQuery]):
    require_perm(request, "datasets.export_dataset")
    version = version_by_id(version_id)
    try:
        return export_response(version, query.format, user=request.user, via="api")
    except ValueError as exc:
        raise ApiError(422, [{"loc": ["query", "format"], "msg": str(exc), "type": "value_error"}]) from None
