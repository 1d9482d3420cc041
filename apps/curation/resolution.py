"""From annotations to a final verdict, and from a final verdict to a training example.

An item is decided when all its annotations are in and agree (same verdict, and for
edits the same text), or when a reviewer adjudicates it. A reviewer's decision
stands: later annotation changes do not undo it. Accepted items become an Example
with the original completion, edited ones with the cold-start text; rejects
never become examples.
"""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.core import audit
from apps.curation.coldstart import cold_start_text, is_unchanged
from apps.curation.models import Annotation, AnnotationRevision, ReviewItem, ReviewQueue
from apps.datasets.models import DatasetVersionExample, Edit, Example, RolloutProvenance
from apps.datasets.versions import freeze_version

ACCEPT, REJECT, EDIT = Annotation.Verdict.ACCEPT, Annotation.Verdict.REJECT, Annotation.Verdict.EDIT
FINAL_VERDICTS = (ACCEPT, REJECT, EDIT)
ORIGINAL, REVIEWER = "original", "reviewer"


class AdjudicationConflict(Exception):
    """Another reviewer decided the item after the version this decision started from; nothing was written."""

    def __init__(self, current: ReviewItem, expected_version: int):
        self.current = current
        self.expected_version = expected_version
        super().__init__(str(self))

    def __str__(self):
        item = self.current
        if item.adjudicated_by_id:
            when = timezone.localtime(item.adjudicated_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            who = f"{item.adjudicated_by.username} decided this item ({item.final_verdict}) at {when}"
        else:
            who = "this item changed"
        return f"Not saved: {who} (version {item.version}), after the version {self.expected_version} you started from."


class InvalidDecision(ValueError):
    pass


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "" while undecided
    reasoning: str = ""
    summary: str = ""
    source: str = ""  # original, annotation:<id>, reviewer
    annotation: Annotation | None = None  # the annotation the example credits


def agreed_outcome(annotations: list[Annotation]) -> Outcome:
    """The final outcome when every annotation is in and they agree; an undecided Outcome otherwise."""
    if not annotations or any(a.verdict == Annotation.Verdict.PENDING for a in annotations):
        return Outcome("")
    verdicts = {a.verdict for a in annotations}
    if len(verdicts) > 1:
        return Outcome("")
    first = min(annotations, key=lambda a: a.pk)
    if first.verdict == EDIT:
        if len({(a.edited_reasoning.strip(), a.edited_summary.strip()) for a in annotations}) > 1:
            return Outcome("")  # they agree it needs editing, not on the text: a reviewer picks
        return Outcome(EDIT, first.edited_reasoning, first.edited_summary, f"annotation:{first.pk}", first)
    return Outcome(first.verdict, source=ORIGINAL if first.verdict == ACCEPT else "", annotation=first)


def resolve_by_agreement(item: ReviewItem) -> None:
    """Set (or clear) the item's final verdict from its annotations, unless a reviewer has decided it."""
    with transaction.atomic():
        # One resolver per item at a time: two last annotations saved together must see each other.
        locked = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue", "rollout", "prompt")
        item = locked.get(pk=item.pk)
        if item.adjudicated_by_id:
            return
        outcome = agreed_outcome(list(item.annotations.all()))
        now = (item.final_verdict, item.final_reasoning, item.final_summary, item.final_source)
        if (outcome.verdict, outcome.reasoning, outcome.summary, outcome.source) == now:
            return
        _apply(item, outcome, adjudicator=None)
        item.save(update_fields=["final_verdict", "final_reasoning", "final_summary", "final_source", "example"])


def decision_outcome(item: ReviewItem, decision: str, reasoning: str = "", summary: str = "") -> Outcome:
    """A reviewer's decision: "reject", "accept" (the original), "annotation:<id>" (that edit) or "reviewer"."""
    if decision == REJECT:
        return Outcome(REJECT)
    if decision == ACCEPT:
        return Outcome(ACCEPT, source=ORIGINAL, annotation=_crediting(item, ACCEPT))
    if decision == REVIEWER:
        if not (reasoning.strip() or summary.strip()):
            raise InvalidDecision("your own edit needs the rewritten reasoning or summary")
        if item.rollout_id and is_unchanged(item.rollout, reasoning, summary):
            raise InvalidDecision("your own edit is the model's text unchanged: change it, or decide "
                                  "\"accept\" to keep the original")
        return Outcome(EDIT, reasoning.replace("\r\n", "\n"), summary.replace("\r\n", "\n"), REVIEWER,
                       _crediting(item, EDIT))
    if decision.startswith("annotation:"):
        pk = decision.removeprefix("annotation:")
        annotation = item.annotations.filter(pk=int(pk), verdict=EDIT).first() if pk.isdigit() else None
        if annotation is None:
            raise InvalidDecision(f"{decision!r} is not an edit of this item")
        return Outcome(EDIT, annotation.edited_reasoning, annotation.edited_summary, decision, annotation)
    raise InvalidDecision(f"decision must be reject, accept, reviewer or annotation:<id>, got {decision!r}")


def adjudicate(item: ReviewItem, user, decision: str, expected_version: int, *, reasoning: str = "",
               summary: str = "", via: str = "web") -> ReviewItem:
    """Record a reviewer's final decision if the item is still at `expected_version`; audited as item.adjudicate."""
    if not user.has_perm("curation.adjudicate"):
        raise PermissionDenied("adjudicating needs the reviewer role")
    outcome = decision_outcome(item, decision, reasoning, summary)
    with transaction.atomic():
        updated = ReviewItem.objects.filter(pk=item.pk, version=expected_version).update(
            version=F("version") + 1, adjudicated_by=user, adjudicated_at=timezone.now(),
        )
        if not updated:
            raise AdjudicationConflict(ReviewItem.objects.select_related("adjudicated_by").get(pk=item.pk),
                                       expected_version)
        item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue", "rollout", "prompt",
                                                                      "adjudicated_by").get(pk=item.pk)
        _apply(item, outcome, adjudicator=user)
        item.save(update_fields=["final_verdict", "final_reasoning", "final_summary", "final_source", "example"])
        audit.record(user, "item.adjudicate", item, via=via, queue=item.queue_id, position=item.position,
                     verdict=outcome.verdict, source=outcome.source, version=item.version)
    return item


def _crediting(item: ReviewItem, verdict: str) -> Annotation | None:
    return item.annotations.filter(verdict=verdict).order_by("pk").first()


def _apply(item: ReviewItem, outcome: Outcome, adjudicator) -> None:
    """Set the final fields and the example they make (the caller saves the item)."""
    item.final_verdict = outcome.verdict
    item.final_reasoning = outcome.reasoning if outcome.verdict == EDIT else ""
    item.final_summary = outcome.summary if outcome.verdict == EDIT else ""
    item.final_source = outcome.source
    previous = item.example_id
    item.example = (_example_for(item, outcome, adjudicator)
                    if outcome.verdict in (ACCEPT, EDIT) and item.queue.target_dataset_id and item.rollout_id else None)
    if previous and previous != item.example_id:
        _drop_if_unused(previous, item.pk)


def _example_for(item: ReviewItem, outcome: Outcome, adjudicator) -> Example:
    rollout = item.rollout
    question = (item.prompt or rollout.prompt).question
    text = rollout.completion if outcome.verdict == ACCEPT else cold_start_text(outcome.reasoning, outcome.summary)
    messages = Example.chat(question, text)
    dataset_id, digest = item.queue.target_dataset_id, Example.hash_for(messages)
    existing = Example.objects.filter(dataset_id=dataset_id, content_hash=digest).first()
    if existing:  # the same text from another item or queue: one example, its first provenance kept
        return existing
    example = Example(
        dataset_id=dataset_id, messages=messages, prompt_id=item.prompt_id or rollout.prompt_id,
        source_rollout=rollout, annotation=outcome.annotation, source="annotation",
        provenance=provenance(item, adjudicator),
        created_by=adjudicator or getattr(outcome.annotation, "annotator", None),
    )
    try:
        with transaction.atomic():
            example.save()
    except IntegrityError:  # written by someone else between the lookup and the insert
        return Example.objects.get(dataset_id=dataset_id, content_hash=digest)
    return example


def provenance(item: ReviewItem, adjudicator=None) -> RolloutProvenance:
    """Where an item's example came from: the rollout, its run, the queue, each edit and who made it."""
    rollout = item.rollout
    return {
        "rollout": rollout.pk, "job": rollout.job_id, "model_version": rollout.model_version_id,
        "queue": item.queue_id, "edits": edits(item, adjudicator),
        "adjudicated_by": adjudicator.username if adjudicator else None,
    }


def edits(item: ReviewItem, adjudicator=None) -> list[Edit]:
    """Every saved revision of the item's annotations, a burst of autosaves with one verdict counting once
    (its last save), then the reviewer's decision."""
    revisions = (AnnotationRevision.objects.filter(annotation__item=item).select_related("by")
                 .order_by("annotation_id", "version"))
    kept: list[AnnotationRevision] = []
    for revision in revisions:
        if kept and kept[-1].annotation_id == revision.annotation_id and kept[-1].verdict == revision.verdict:
            kept[-1] = revision
        else:
            kept.append(revision)
    entries = [{"by": r.by.username if r.by else None, "at": r.at.isoformat(), "verdict": r.verdict,
                "version": r.version} for r in sorted(kept, key=lambda r: (r.at, r.pk))]
    if adjudicator is not None:
        entries.append({"by": adjudicator.username, "at": (item.adjudicated_at or timezone.now()).isoformat(),
                        "verdict": item.final_verdict, "version": item.version})
    return entries


def _drop_if_unused(example_id: int, item_id: int) -> None:
    """A decision that changed leaves its old example behind: delete it unless a version or another item holds it."""
    held = (DatasetVersionExample.objects.filter(example_id=example_id).exists()
            or ReviewItem.objects.filter(example_id=example_id).exclude(pk=item_id).exists())
    if not held:
        Example.objects.filter(pk=example_id, source="annotation").delete()


# ---- what a reviewer sees ----------------------------------------------------------------------


def needing_adjudication(queue: ReviewQueue):
    """Items whose annotations are all in but undecided: the verdicts (or, for edits, the texts) disagree."""
    return (queue.items.filter(final_verdict="")
            .annotate(annotation_count=Count("annotations"),
                      pending=Count("annotations", filter=Q(annotations__verdict=Annotation.Verdict.PENDING)))
            .filter(annotation_count__gt=0, pending=0).order_by("position"))


# ---- from decisions to a dataset version -------------------------------------------------------


class NothingToFreeze(ValueError):
    pass


def verdict_counts(queue: ReviewQueue) -> dict[str, int]:
    counts = dict(queue.items.exclude(final_verdict="").values_list("final_verdict").annotate(n=Count("id")))
    return {verdict: counts.get(verdict, 0) for verdict in FINAL_VERDICTS}


def freezable(queue: ReviewQueue) -> dict[str, int]:
    """What a freeze would hold now: accepted and edited items with an example, and how many distinct examples
    they are (items with the same prompt and text share one example, and a version holds each text once)."""
    return queue.items.filter(final_verdict__in=(ACCEPT, EDIT), example__isnull=False).aggregate(
        items=Count("id"), examples=Count("example", distinct=True))


def freeze_queue(queue: ReviewQueue, user, note: str = "", via: str = "web"):
    """Freeze the queue's accepted and edited examples, in item order, into a new version of its target dataset.

    Items whose text is identical to an earlier item's (the same prompt and the same accepted completion or
    rewrite) are one example, frozen once; the version's provenance says how many items were merged that way.
    """
    if not user.has_perm("datasets.freeze_version"):
        raise PermissionDenied("freezing a version needs the reviewer role")
    if queue.target_dataset is None:
        raise NothingToFreeze("this queue has no target dataset to freeze into")
    example_ids = list(queue.items.filter(final_verdict__in=(ACCEPT, EDIT), example__isnull=False)
                       .order_by("position").values_list("example_id", flat=True))
    unique_ids = list(dict.fromkeys(example_ids))
    if not unique_ids:
        raise NothingToFreeze("no item of this queue is accepted or edited yet: nothing to freeze")
    by_id = Example.objects.in_bulk(unique_ids)
    counts = verdict_counts(queue)
    version = freeze_version(
        queue.target_dataset, [by_id[pk] for pk in unique_ids], user=user, note=note,
        provenance={"queue": queue.pk, "name": queue.name, "accepted": counts[ACCEPT], "edited": counts[EDIT],
                    "rejected": counts[REJECT], "items": len(example_ids),
                    "merged": len(example_ids) - len(unique_ids)},
        via=via,
    )
    return version


def freeze_message(version) -> str:
    """What a queue's freeze did, in words: how many items became how many examples, and why fewer."""
    provenance = version.provenance
    items, merged = provenance.get("items", version.example_count), provenance.get("merged", 0)
    examples = f"{version.example_count:,} example{'s' if version.example_count != 1 else ''}"
    said = f"Froze {version} with {examples} (hash {version.content_hash[:12]})"
    if not merged:
        return said + "."
    return (f"{said}: {items:,} accepted or edited items → {examples}; {merged:,} "
            f"{'was' if merged == 1 else 'were'} identical to another item (the same prompt and text) and "
            f"{'was' if merged == 1 else 'were'} merged, since a version holds each text once.")
