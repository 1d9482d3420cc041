"""Which examples a freeze request names (plain code: the API endpoint calls it, and its tests can too)."""

from django.core.exceptions import ValidationError

from apps.datasets.models import Dataset, Example

CHUNK = 10_000
MAX_LISTED = 10  # name at most this many bad ids in one message


def examples_to_freeze(dataset: Dataset, example_ids: list[int]) -> list[Example]:
    """The examples named by `example_ids`, in that order.

    Refuses (ValidationError naming the field) an empty list, a repeated id, and ids that are not examples
    of `dataset`: the version must hold exactly what was asked for, or nothing.
    """
    # Only the columns a version needs: a million full message lists would not fit in a web process.
    examples = Example.objects.filter(dataset=dataset).only("pk", "content_hash")
    if not example_ids:
        raise ValidationError({"example_ids": "A version needs at least one example"})
    seen: set[int] = set()
    repeated = [pk for pk in example_ids if pk in seen or seen.add(pk)]
    if repeated:
        raise ValidationError({"example_ids": f"Each example can appear once; repeated: {_listed(repeated)}"})
    found: dict[int, Example] = {}
    for start in range(0, len(example_ids), CHUNK):
        found.update((e.pk, e) for e in examples.filter(pk__in=example_ids[start:start + CHUNK]))
    missing = [pk for pk in example_ids if pk not in found]
    if missing:
        raise ValidationError({"example_ids": f"Not examples of dataset {dataset.name!r}: {_listed(missing)}"})
    return [found[pk] for pk in example_ids]


def _listed(ids: list[int]) -> str:
    shown = ", ".join(str(pk) for pk in ids[:MAX_LISTED])
    return shown + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")
