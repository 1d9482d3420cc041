"""Freezing examples into an immutable, content-hashed dataset version."""

import hashlib

from django.db import transaction
from django.db.models import Max

from apps.core.bulk import bulk_insert
from apps.datasets.models import Dataset, DatasetVersion, DatasetVersionExample, Example


def freeze_version(dataset: Dataset, examples: list[Example], user=None, note: str = "",
                   provenance: dict | None = None) -> DatasetVersion:
    """A new version of `dataset` holding `examples` in this order; its hash is over their content hashes."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.content_hash.encode())
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()  # one freeze at a time per dataset
        number = (dataset.versions.aggregate(last=Max("number"))["last"] or 0) + 1
        version = DatasetVersion.objects.create(
            dataset=dataset, number=number, content_hash=digest.hexdigest(), example_count=len(examples),
            note=note, provenance=provenance or {}, created_by=user,
        )
        bulk_insert(DatasetVersionExample, [
            {"version_id": version.pk, "example_id": example.pk, "position": i} for i, example in enumerate(examples)
        ])
    return version
