"""What the command-line tools of several apps share about datasets."""

from django.core.management.base import CommandError

from apps.datasets.models import Dataset


def dataset_named(name: str, create: bool) -> Dataset:
    """The dataset a command writes into; made only when asked (--create), so a typo is not a new dataset."""
    if create:
        return Dataset.objects.get_or_create(name=name)[0]
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        raise CommandError(f"No dataset {name!r}; pass --create to make it")
    return dataset
