"""Saving an annotation under an optimistic lock, and moving through one annotator's items.

Two browser tabs of one annotator (or an API client and a tab) may save the same
annotation. Each save names the version it started from; the UPDATE only lands
on that version and bumps it, so a stale save changes nothing and gets an
EditConflict naming who saved last and when. Every saved state is kept as an
AnnotationRevision: the provenance of each edit and who made it.
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core import audit
from apps.curation.coldstart import is_unchanged
from apps.curation.models import Annotation, AnnotationRevision, ReviewItem
from apps.curation.resolution import resolve_by_agreement

FIELDS = ("verdict", "readability", "edited_reasoning", "edited_summary", "tags", "notes")
TEXT_LIMITS = {"edited_reasoning": 2_000_000, "edited_summary": 200_000, "notes": 10_000}
UNCHANGED_EDIT = ("the rewrite is the model's text unchanged: change it before saving it as an edit, "
                  "or accept the rollout as it is")
MAX_TAGS, MAX_TAG_CHARS = 20, 50


class EditConflict(Exception):
    """Someone saved the annotation after the version this save started from; nothing was written."""

    def __init__(self, current: Annotation, expected_version: int):
        self.current = current
        self.expected_version = expected_version
        super().__init__(str(self))

    def __str__(self):
        who = self.current.updated_by.username if self.current.updated_by else "someone"
        when = timezone.localtime(self.current.updated_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        return (f"Not saved: {who} saved this annotation at {when} (version {self.current.version}) "
                f"after the version {self.expected_version} you started from.")


class InvalidChange(ValueError):
    """A change that cannot be saved; `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def clean_changes(changes: dict) -> dict:
    """The changes as the model stores them; strings from a form are accepted (tags comma-separated)."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InvalidChange(unknown[0], f"not a field of an annotation (use {', '.join(FIELDS)})")
    clean = {}
    for field, value in changes.items():
        if field == "verdict":
            if value not in Annotation.Verdict.values:
                raise InvalidChange(field, f"must be one of {', '.join(Annotation.Verdict.values)}, got {value!r}")
        elif field == "readability":
            value = _readability(value)
        elif field == "tags":
            value = _tags(value)
        else:
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InvalidChange(field, "must be text")
            if len(value) > TEXT_LIMITS[field]:
                raise InvalidChange(field, f"is {len(value):,} characters, at most {TEXT_LIMITS[field]:,}")
            value = value.replace("\r\n", "\n").replace("\x00", "")
        clean[field] = value
    return clean


def _readability(value):
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidChange("readability", f"must be a whole number from 1 to 5, got {value!r}") from None
    if isinstance(value, bool) or not 1 <= number <= 5 or str(number) != str(value).strip():
        raise InvalidChange("readability", f"must be a whole number from 1 to 5, got {value!r}")
    return number


def _tags(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(tag, str) for tag in value):
        raise InvalidChange("tags", "must be a list of text tags (or one comma-separated text)")
    tags = []
    for tag in (t.strip() for t in value):
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidChange("tags", f"{tag[:20]!r}… is longer than {MAX_TAG_CHARS} characters")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidChange("tags", f"{len(tags)} tags, at most {MAX_TAGS}")
    return tags


def save_annotation(annotation: Annotation, user, changes: dict, expected_version: int, via: str = "web") -> Annotation:
    """Apply `changes` if the annotation is still at `expected_version`; returns it at its new version.

    Only the annotator it belongs to, with the annotate permission, may save it (PermissionDenied).
    Raises InvalidChange for a bad value (an edit whose text is the model's unchanged among them) and
    EditConflict for a stale version; neither writes anything. A pending annotation may hold a draft rewrite:
    the item stays undone until a verdict is saved.
    A verdict change is audited (annotation.accept, .reject, .edit), the autosaves in between are not.
    """
    if annotation.annotator_id != user.pk or not user.has_perm("curation.change_annotation"):
        raise PermissionDenied("only the annotator it is assigned to may change an annotation")
    clean = clean_changes(changes)
    if isinstance(expected_version, str) and expected_version.strip().isdigit():
        expected_version = int(expected_version)
    if not isinstance(expected_version, int) or isinstance(expected_version, bool):
        raise InvalidChange("version", f"must be the version number the edit started from, got {expected_version!r}")
    with transaction.atomic():
        # The lock makes the verdict read here the one the UPDATE replaces (for the audit decision).
        before = Annotation.objects.select_for_update().filter(pk=annotation.pk).values("verdict").first()
        if before is None:
            raise Annotation.DoesNotExist(f"annotation {annotation.pk} no longer exists")
        updated = Annotation.objects.filter(pk=annotation.pk, version=expected_version).update(
            **clean, version=F("version") + 1, updated_by=user, updated_at=timezone.now()
        )
        if not updated:
            current = Annotation.objects.select_related("updated_by").get(pk=annotation.pk)
            raise EditConflict(current, expected_version)
        saved = Annotation.objects.select_related("item__queue", "item__rollout", "annotator").get(pk=annotation.pk)
        if saved.verdict == Annotation.Verdict.EDIT:
            if not (saved.edited_reasoning.strip() or saved.edited_summary.strip()):
                raise InvalidChange("edited_reasoning", "an edit needs the rewritten reasoning or summary")
            # An "edit" of unchanged text would count as done and freeze the model's own text as a person's rewrite.
            if saved.item.rollout is not None and is_unchanged(saved.item.rollout, saved.edited_reasoning,
                                                               saved.edited_summary):
                raise InvalidChange("edited_reasoning", UNCHANGED_EDIT)
        AnnotationRevision.objects.create(
            annotation=saved, version=saved.version, by=user, verdict=saved.verdict, readability=saved.readability,
            edited_reasoning=saved.edited_reasoning, edited_summary=saved.edited_summary, tags=saved.tags,
            notes=saved.notes,
        )
        if saved.verdict != before["verdict"] and saved.verdict != Annotation.Verdict.PENDING:
            audit.record(user, f"annotation.{saved.verdict}", saved, via=via, queue=saved.item.queue_id,
                         position=saved.item.position, version=saved.version)
        resolve_by_agreement(saved.item)
    return saved


# ---- one annotator's way through a queue ---------------------------------------------------


def assigned(queue, user):
    """The user's annotations in this queue, in item order."""
    return Annotation.objects.filter(item__queue=queue, annotator=user).order_by("item__position")


def next_pending_position(queue, user) -> int | None:
    return assigned(queue, user).filter(verdict=Annotation.Verdict.PENDING).values_list(
        "item__position", flat=True).first()


def neighbours(queue, user, position: int) -> tuple[int | None, int | None]:
    """The positions of the user's items before and after `position`."""
    mine = assigned(queue, user)
    previous = mine.filter(item__position__lt=position).order_by("-item__position").values_list(
        "item__position", flat=True).first()
    following = mine.filter(item__position__gt=position).values_list("item__position", flat=True).first()
    return previous, following


def annotation_at(queue, user, position: int) -> Annotation | None:
    """The user's annotation of the item at `position`, or None if it is not theirs (or not there)."""
    return (Annotation.objects.select_related("item__rollout__prompt", "item__prompt", "updated_by")
            .filter(item__queue=queue, item__position=position, annotator=user).first())


def item_exists(queue, position: int) -> bool:
    return ReviewItem.objects.filter(queue=queue, position=position).exists()
