from django.shortcuts import get_object_or_404
from ninja import Query, Router

from apps.api.auth import require_perm
from apps.api.errors import ApiError
from apps.api.paging import page
from apps.api.responses import READ, WRITE
from apps.api.schemas import AnnotationOut, AnnotationPage, AnnotationPatch, AnnotationQuery, ErrorOut
from apps.curation.models import Annotation
from apps.curation.review import EditConflict, InvalidChange, save_annotation

router = Router(tags=["annotations"])

ANNOTATIONS = Annotation.objects.select_related("item", "annotator")


@router.get("/annotations", response={200: AnnotationPage, **READ}, summary="Annotations, newest first",
            description="Filter by review queue id and by annotator username.")
def list_annotations(request, query: Query[AnnotationQuery]):
    require_perm(request, "curation.view_annotation")
    annotations = ANNOTATIONS
    if query.queue:
        annotations = annotations.filter(item__queue_id=query.queue)
    if query.annotator:
        annotations = annotations.filter(annotator__username=query.annotator)
    return page(annotations, query.after, query.limit)


@router.patch("/annotations/{annotation_id}", response={200: AnnotationOut, 409: ErrorOut, **WRITE},
              summary="Change your annotation (optimistic lock)",
              description="Only the annotation's own annotator may change it (with `curation.change_annotation`). "
                          "Send the `version` you read as `expected_version`: if someone saved since, nothing is "
                          "written and the 409 says who saved and when. Fields left out (or null, except "
                          "readability) stay as they are.")
def change_annotation(request, annotation_id: int, payload: AnnotationPatch):
    require_perm(request, "curation.change_annotation")
    annotation = get_object_or_404(ANNOTATIONS, pk=annotation_id)
    if annotation.annotator_id != request.user.pk:
        raise ApiError(403, f"Annotation {annotation.pk} is {annotation.annotator.username}'s: only its annotator "
                            "may change it (reviewers adjudicate the item instead)",
                       permission="curation.change_annotation")
    changes = payload.dict(exclude_unset=True, exclude={"expected_version"})
    changes = {field: value for field, value in changes.items() if value is not None or field == "readability"}
    try:
        save_annotation(annotation, request.user, changes, payload.expected_version, via="api")
    except EditConflict as exc:
        raise ApiError(409, str(exc), current_version=exc.current.version) from None
    except InvalidChange as exc:
        raise ApiError(422, [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]) from None
    return get_object_or_404(ANNOTATIONS, pk=annotation_id)
