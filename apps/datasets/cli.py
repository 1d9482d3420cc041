"""What the command-line tools of several apps share about datasets."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError

from apps.datasets.models import Dataset


@contextmanager
def dataset_named(name: str, create: bool) -> Iterator[Dataset]:
    """The dataset a command writes into; made only when asked (--create), so a typo is not a new dataset.
    One made here is removed again when the command fails before anything landed in it."""
    dataset = Dataset.objects.filter(name=name).first()
    made = dataset is None and create
    if made:
        dataset = Dataset.objects.create(name=name)
    if dataset is None:
        raise CommandError(f"No dataset {name!r}; pass --create to make it")
    try:
        yield dataset
    except BaseException:
        if made and not dataset.prompts.exists() and not dataset.examples.exists():
            dataset.delete()
        raise
