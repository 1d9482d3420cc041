from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError, form_errors
from apps.api.paging import page
from apps.api.responses import READ, READ_ONE, WRITE
from apps.api.schemas import DatasetDetailOut, DatasetIn, DatasetOut, DatasetPage, ErrorOut, PageQuery, Slug
from apps.datasets.forms import DatasetForm
from apps.datasets.models import Dataset

router = Router(tags=["datasets"])


def dataset_by_name(name: str) -> Dataset:
    return get_object_or_404(Dataset.objects.select_related("created_by"), name=name)


@router.get("/datasets", response={200: DatasetPage, **READ}, summary="List datasets (oldest first)")
def list_datasets(request, query: Query[PageQuery]):
    require_perm(request, "datasets.view_dataset")
    return page(Dataset.objects.select_related("created_by"), query.after, query.limit, descending=False)


@router.get("/datasets/{name}", response={200: DatasetDetailOut, **READ_ONE}, summary="A dataset with its counts")
def get_dataset(request, name: Slug):
    require_perm(request, "datasets.view_dataset")
    dataset = dataset_by_name(name)
    dataset.prompt_count = dataset.prompts.count()
    dataset.example_count = dataset.examples.count()
    dataset.version_count = dataset.versions.count()
    return dataset


@router.post("/datasets", response={201: DatasetOut, 409: ErrorOut, **WRITE}, summary="Create a dataset",
             description="Needs `datasets.add_dataset`.")
def create_dataset(request, payload: DatasetIn):
    require_perm(request, "datasets.add_dataset")
    form = DatasetForm(data=payload.dict())
    if not form.is_valid():
        raise ApiError(422, form_errors(form, "body"))
    dataset = form.save(commit=False)
    dataset.created_by = request.user
    try:
        dataset.save()
    except IntegrityError:  # created by someone else between the form's check and this insert
        raise ApiError(409, f"A dataset named {dataset.name!r} already exists") from None
    return Status(201, dataset)
