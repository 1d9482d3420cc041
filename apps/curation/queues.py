"""Review queues: built from a saved rollout filter or an import, assigned with overlap k, and their progress.

A saved filter is the rollout browser's GET parameters (apps.rollouts.browse.RolloutFilterForm)
stored as a dict, so a queue can always say which rollouts it was built from and the
browser can show them again. Items are spread across prompts (one rollout per prompt, then a
second per prompt, ..., in a random order fixed by the queue's seed), so a limit of N covers as
many prompts as it can; a queue without a seed follows the filter's own sort order.
"""

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Count, F, Q, Window
from django.db.models.functions import Cast, Mod, RowNumber

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.core.pagination import in_order
from apps.curation.agreement import Agreement, cohen_kappa, fleiss_kappa
from apps.curation.models import Annotation, ReviewItem, ReviewQueue
from apps.datasets.models import Dataset
from apps.jobs.models import Job
from apps.rollouts.browse import SORTS, RolloutFilterForm

MAX_ITEMS = 50_000  # a bigger queue needs a limit: nobody reviews more, and a typo should not queue 10M rollouts
MIN_SHARED_ITEMS = 5  # Cohen's kappa for a pair of annotators needs at least this many items both judged
IMPORT_KIND = "ingest_rollouts"
MAX_SEED = 2**31 - 2
_PRIME = 2**31 - 1  # the keys below are computed mod this prime; squares of them still fit a bigint


class QueueError(ValueError):
    """A queue that cannot be built; `field` names the input at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def annotate_permission() -> Permission:
    return Permission.objects.get(content_type__app_label="curation", codename="change_annotation")


def eligible_annotators():
    """Active users who may annotate (the annotator role or above)."""
    perm = annotate_permission()
    return (get_user_model().objects.filter(is_active=True)
            .filter(Q(is_superuser=True) | Q(groups__permissions=perm) | Q(user_permissions=perm))
            .distinct().order_by("username"))


def saved_filter(params) -> dict:
    """The filter parameters worth storing: the form's fields that are set (a QueryDict or a dict)."""
    names = RolloutFilterForm.base_fields
    return {name: str(params.get(name)).strip() for name in names
            if params.get(name) not in (None, "") and str(params.get(name)).strip()}


def filtered_rollouts(source_filter: dict, seed: int | None = None):
    """The rollouts a saved filter selects, spread across prompts by `seed`, or in the filter's sort order
    without one; QueueError names a bad parameter."""
    form = RolloutFilterForm(source_filter)
    if not form.is_valid():
        name, errors = next(iter(form.errors.items()))
        raise QueueError(name if name != "__all__" else "filter", " ".join(errors))
    if seed is not None:
        return spread_across_prompts(form.rollouts(), seed)
    field, descending = SORTS[form.cleaned_data["sort"] or "newest"]
    return in_order(form.rollouts(), field, descending)


def spread_across_prompts(rollouts, seed: int):
    """Round 1 takes one rollout of every prompt, round 2 a second of each, and so on; within a round the
    prompts, and within a prompt its rollouts, come in a pseudo-random order fixed by `seed`.

    Computed by the database (a row number per prompt, then one sort), so taking the first N reads N rows
    rather than every rollout the filter matches; the keys are plain integer arithmetic, the same on
    Postgres and SQLite and from one release to the next, so a seed always rebuilds the same queue.
    """
    rollout_key = _seeded_key("id", seed, "rollout")
    prompt_key = _seeded_key("prompt_id", seed, "prompt")
    round_ = Window(RowNumber(), partition_by=[F("prompt_id")], order_by=[rollout_key.asc(), F("id").asc()])
    return (rollouts.order_by().annotate(spread_round=round_, prompt_key=prompt_key)
            .order_by("spread_round", "prompt_key", "prompt_id"))


def _seeded_key(column: str, seed: int, stream: str):
    """((x + c) * a mod p)² + c mod p: a multiplier drawn from the seed, then a square to break the
    multiplier's regular spacing (consecutive ids would otherwise keep a fixed stride)."""
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=16).digest()
    a = int.from_bytes(digest[:8]) % (_PRIME - 1) + 1
    c = int.from_bytes(digest[8:]) % _PRIME
    first = Mod((Cast(column, BigIntegerField()) + c) * a, _PRIME)
    return Mod(first * first + c, _PRIME)


def import_filter(job_id) -> dict:
    """The saved filter for the rollouts of one ingest job."""
    job = Job.objects.filter(pk=job_id).first() if str(job_id).isdigit() else None
    if job is None or job.kind != IMPORT_KIND:
        raise QueueError("import_job", f"no rollout import (ingest job) #{job_id}")
    return {"job": str(job.pk), "sort": "oldest"}  # an import's own order: the file's


@transaction.atomic
def build_queue(*, name: str, annotators, overlap: int, user=None, source: str = ReviewQueue.Source.FILTER,
                source_filter: dict | None = None, import_job=None, limit: int | None = None, guidelines: str = "",
                target_dataset=None, new_dataset: str = "", suggested_tags=(), seed: int | None = 0,
                via: str = "web") -> ReviewQueue:
    """Create a queue of the rollouts a filter (or an import) selects, assigned to `annotators` with overlap k.

    `seed` spreads the items across prompts (see spread_across_prompts); None keeps the filter's order.
    `new_dataset` names a target dataset to create with the queue (instead of `target_dataset`).
    All or nothing: a bad input raises QueueError naming it and creates nothing (no dataset either).
    """
    annotators = list(annotators)
    if not name.strip():
        raise QueueError("name", "give the queue a name")
    if not annotators:
        raise QueueError("annotators", "choose at least one annotator")
    not_allowed = [a.username for a in annotators if not a.has_perm("curation.change_annotation")]
    if not_allowed:
        raise QueueError("annotators", f"{', '.join(not_allowed)} may not annotate (needs the annotator role)")
    if not 1 <= overlap <= len(annotators):
        raise QueueError("overlap",
                         f"must be between 1 and the number of annotators ({len(annotators)}), got {overlap}")
    if limit is not None and limit < 1:
        raise QueueError("limit", f"must be at least 1, got {limit}")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise QueueError("seed", f"must be between 0 and {MAX_SEED:,}, got {seed}")
    if source == ReviewQueue.Source.IMPORT:
        source_filter = import_filter(import_job)
    else:
        source_filter = saved_filter(source_filter or {})
    rollouts = filtered_rollouts(source_filter, seed).values_list("pk", "prompt_id")
    cap = limit if limit is not None else MAX_ITEMS
    picked = list(rollouts[: cap + 1])
    if len(picked) > cap and limit is None:
        raise QueueError("limit", f"the filter matches more than {MAX_ITEMS:,} rollouts: set a limit")
    picked = picked[:cap]
    if not picked:
        raise QueueError("filter", "the filter matches no rollouts")
    creator = user if getattr(user, "is_authenticated", False) else None
    if new_dataset:
        target_dataset = _new_dataset(new_dataset, user, creator)
    try:
        with transaction.atomic():
            queue = ReviewQueue.objects.create(
                name=name.strip(), guidelines=guidelines, source=source, source_filter=source_filter,
                item_limit=limit, overlap=overlap, suggested_tags=list(suggested_tags), seed=seed,
                target_dataset=target_dataset, created_by=creator,
            )
    except IntegrityError:
        raise QueueError("name", f"a queue named {name.strip()!r} exists already") from None
    queue.annotators.set(annotators)
    bulk_insert(ReviewItem, [{"queue_id": queue.pk, "rollout_id": rollout_id, "prompt_id": prompt_id,
                              "position": position} for position, (rollout_id, prompt_id) in enumerate(picked, 1)])
    assigned = assign(queue)
    audit.record(user, "queue.create", queue, via=via, source=source, filter=source_filter, items=len(picked),
                 overlap=overlap, annotators=[a.username for a in annotators], seed=seed,
                 **({"new_dataset": target_dataset.name} if new_dataset else {}))
    queue.assigned_count = assigned
    return queue


def _new_dataset(name: str, user, creator) -> Dataset:
    """The queue's target dataset, made with it (the caller's transaction drops it if the queue fails)."""
    if user is not None and not user.has_perm("datasets.add_dataset"):
        raise QueueError("new_dataset", "you may not create datasets (an admin can): choose an existing one")
    name = name.strip()
    try:
        validate_slug(name)
    except ValidationError:
        raise QueueError("new_dataset", "a dataset name is letters, digits, hyphens and underscores") from None
    if Dataset.objects.filter(name=name).exists():
        raise QueueError("new_dataset", f"a dataset named {name!r} exists already: choose it as the target")
    return Dataset.objects.create(name=name, created_by=creator,
                                  description="Made as the target of a review queue")


def assign(queue: ReviewQueue) -> int:
    """Give every item `overlap` distinct annotators from the queue's, as pending annotations; returns how many
    were added.

    Each item takes the least-loaded annotators, ties broken round-robin from where the last item
    stopped, so loads never differ by more than one. Items that already have annotators keep
    them (running it again after adding annotators only fills the gaps).
    """
    annotators = list(queue.annotators.order_by("pk").values_list("pk", flat=True))
    if not annotators:
        return 0
    order = {pk: i for i, pk in enumerate(annotators)}
    have: dict[int, set[int]] = defaultdict(set)
    load: Counter = Counter()
    for item_id, annotator_id in Annotation.objects.filter(item__queue=queue).values_list("item_id", "annotator_id"):
        have[item_id].add(annotator_id)
        load[annotator_id] += 1
    k, n, cursor, rows = min(queue.overlap, len(annotators)), len(annotators), 0, []
    for item_id in queue.items.order_by("position").values_list("pk", flat=True):
        need = k - len(have[item_id])
        if need <= 0:
            continue
        candidates = sorted((a for a in annotators if a not in have[item_id]),
                            key=lambda a: (load[a], (order[a] - cursor) % n))
        for annotator in candidates[:need]:
            rows.append({"item_id": item_id, "annotator_id": annotator})
            load[annotator] += 1
            cursor = (order[annotator] + 1) % n
    return bulk_insert(Annotation, rows)


# ---- progress and agreement -------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorProgress:
    username: str
    assigned: int
    done: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.assigned) if self.assigned else 0


def annotator_progress(queue: ReviewQueue) -> list[AnnotatorProgress]:
    rows = (Annotation.objects.filter(item__queue=queue).values("annotator__username")
            .annotate(assigned=Count("id"), done=Count("id", filter=~Q(verdict=Annotation.Verdict.PENDING)))
            .order_by("annotator__username"))
    return [AnnotatorProgress(r["annotator__username"], r["assigned"], r["done"]) for r in rows]


@dataclass(frozen=True)
class QueueProgress:
    items: int
    annotated: int  # every assigned annotation is in
    decided: int  # a final verdict, by agreement or adjudication
    assigned: int
    done: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.assigned) if self.assigned else 0


def queue_progress(queue: ReviewQueue) -> QueueProgress:
    pending = Count("annotations", filter=Q(annotations__verdict=Annotation.Verdict.PENDING))
    items = queue.items.annotate(pending=pending, n=Count("annotations"))
    figures = queue.items.aggregate(items=Count("id"), decided=Count("id", filter=~Q(final_verdict="")))
    annotations = Annotation.objects.filter(item__queue=queue).aggregate(
        assigned=Count("id"), done=Count("id", filter=~Q(verdict=Annotation.Verdict.PENDING)))
    return QueueProgress(items=figures["items"], annotated=items.filter(pending=0, n__gt=0).count(),
                         decided=figures["decided"], **annotations)


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    agreement: Agreement

    @property
    def enough(self) -> bool:
        return self.agreement.items >= MIN_SHARED_ITEMS


def queue_agreement(queue: ReviewQueue) -> tuple[Agreement, list[PairAgreement]]:
    """Fleiss' kappa over the items all k annotators have judged (k ≥ 2), Cohen's kappa per annotator pair."""
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    done = (Annotation.objects.filter(item__queue=queue).exclude(verdict=Annotation.Verdict.PENDING)
            .values_list("item_id", "annotator__username", "verdict"))
    for item_id, username, verdict in done:
        by_item[item_id][username] = verdict
    complete = [list(v.values()) for v in by_item.values() if len(v) == queue.overlap] if queue.overlap >= 2 else []
    fleiss = fleiss_kappa(complete)
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for verdicts in by_item.values():
        for a, b in combinations(sorted(verdicts), 2):
            pairs[(a, b)].append((verdicts[a], verdicts[b]))
    return fleiss, [PairAgreement(a, b, cohen_kappa(shared)) for (a, b), shared in sorted(pairs.items())]
