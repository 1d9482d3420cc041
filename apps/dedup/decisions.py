"""Keeping and dropping duplicates, by the run's rule or by a person, and writing the version
without the dropped ones. Only members of the run's own version are decided: an earlier version's
example is there to be compared with, not changed.
"""

from typing import NamedTuple

from django.db import transaction
from django.db.models import Case, Count, Q, Value, When
from django.utils import timezone

from apps.core import audit
from apps.datasets.models import DatasetVersion, DatasetVersionExample
from apps.datasets.versions import freeze_version
from apps.dedup.models import ClusterMember, DedupRun, DuplicateCluster


class DecisionError(ValueError):
    """A decision that cannot be made (an earlier version's member, a cluster of another run)."""


def _own_members(run: DedupRun):
    return ClusterMember.objects.filter(cluster__run=run, version_id=run.version_id)


def apply_rule(run: DedupRun, user=None, via: str = "web", clusters=None) -> int:
    """Keep each undecided cluster's representative and drop its other members of the version
    (across versions, the representative is the earlier example, so all of them go). Returns how
    many clusters were decided; clusters a person decided are left as they are."""
    undecided = DuplicateCluster.objects.filter(run=run, decision=DuplicateCluster.Decision.UNDECIDED)
    if clusters is not None:
        undecided = undecided.filter(pk__in=[c.pk for c in clusters])
    with transaction.atomic():
        ids = list(undecided.select_for_update().values_list("pk", flat=True))
        _own_members(run).filter(cluster_id__in=ids).update(
            keep=Case(When(is_representative=True, then=Value(True)), default=Value(False)))
        DuplicateCluster.objects.filter(pk__in=ids).update(decision=DuplicateCluster.Decision.RULE, decided_by=None,
                                                           decided_at=timezone.now())
        if ids:
            audit.record(user, "dedup.apply_rule", run, via=via, clusters=len(ids), rule=run.rule)
    return len(ids)


def decide_member(member: ClusterMember, keep: bool, user=None, via: str = "web") -> ClusterMember:
    """A person keeps or drops one member; the cluster is then decided by a person."""
    cluster = member.cluster
    if member.version_id != cluster.run.version_id:
        raise DecisionError(f"example #{member.example_id} is in {member.version}, an earlier version: only the "
                            f"examples of {cluster.run.version} can be kept or dropped")
    with transaction.atomic():
        ClusterMember.objects.filter(pk=member.pk).update(keep=keep)
        _decided_by_person(cluster, user)
        # The rest of the cluster, undecided until now, stays in: only what a person drops goes.
        cluster.members.filter(keep__isnull=True, version_id=cluster.run.version_id).update(keep=True)
        audit.record(user, "dedup.decide", cluster.run, via=via, cluster=cluster.number,
                     example=member.example_id, keep=keep)
    member.refresh_from_db()
    return member


def decide_cluster(cluster: DuplicateCluster, keep: str, user=None, via: str = "web") -> DuplicateCluster:
    """A person decides a whole cluster: `keep` "all" (not duplicates after all) or "representative"
    (the rule's choice, made by hand)."""
    if keep not in ("all", "representative"):
        raise DecisionError(f"keep must be 'all' or 'representative', not {keep!r}")
    with transaction.atomic():
        own = cluster.members.filter(version_id=cluster.run.version_id)
        if keep == "all":
            own.update(keep=True)
        else:
            own.update(keep=Case(When(is_representative=True, then=Value(True)), default=Value(False)))
        _decided_by_person(cluster, user)
        audit.record(user, "dedup.decide", cluster.run, via=via, cluster=cluster.number, keep=keep)
    cluster.refresh_from_db()
    return cluster


def _decided_by_person(cluster: DuplicateCluster, user) -> None:
    DuplicateCluster.objects.filter(pk=cluster.pk).update(
        decision=DuplicateCluster.Decision.PERSON, decided_at=timezone.now(),
        decided_by=user if getattr(user, "is_authenticated", False) else None)


def decision_counts(run: DedupRun) -> dict:
    """How many of the version's members are kept, dropped and undecided; clusters by decision."""
    members = _own_members(run).aggregate(
        kept=Count("pk", filter=Q(keep=True)), dropped=Count("pk", filter=Q(keep=False)),
        undecided=Count("pk", filter=Q(keep__isnull=True)))
    clusters = dict(run.clusters.values_list("decision").annotate(n=Count("pk")).values_list("decision", "n"))
    return members | {"clusters_" + d: clusters.get(d, 0) for d in DuplicateCluster.Decision.values}


class _Entry(NamedTuple):  # what freeze_version reads of an example
    pk: int
    content_hash: str


def write_clean_version(run: DedupRun, user=None, note: str = "", via: str = "web") -> DatasetVersion:
    """A new version of the run's dataset: the run's version in its order, less every example marked
    drop. The note and provenance say what was removed and why; the run records the version."""
    dropped = _own_members(run).filter(keep=False)
    why = dropped.aggregate(
        exact=Count("pk", filter=Q(cluster__kind=DuplicateCluster.Kind.EXACT)),
        near=Count("pk", filter=Q(cluster__kind=DuplicateCluster.Kind.NEAR)),
        by_rule=Count("pk", filter=Q(cluster__decision=DuplicateCluster.Decision.RULE)),
        by_person=Count("pk", filter=Q(cluster__decision=DuplicateCluster.Decision.PERSON)))
    count = why["exact"] + why["near"]
    if count == 0:
        raise DecisionError("No example is marked drop: apply the rule or drop members first")
    version = run.version
    kept = (DatasetVersionExample.objects.filter(version=version)
            .exclude(example_id__in=dropped.values("example_id")).order_by("position")
            .values_list("example_id", "example__content_hash"))
    method = run.get_method_display() + (f", Jaccard ≥ {run.threshold:g}" if run.method == DedupRun.Method.NEAR else "")
    against = ", ".join(str(v) for v in run.against.all())
    reason = (f"De-duplicated {version} (run #{run.pk}: {method}, "
              f"{'against ' + against if against else 'within the version'}): {count:,} of "
              f"{version.example_count:,} examples dropped — {why['exact']:,} exact and {why['near']:,} near "
              f"duplicates; {why['by_rule']:,} by the rule '{run.get_rule_display()}', {why['by_person']:,} "
              f"by a person.")
    provenance = {"from": "de-duplication", "dedup_run": run.pk, "source_version": version.pk,
                  "method": run.method, "threshold": run.threshold, "scope": run.scope,
                  "against": [v.pk for v in run.against.all()], "dropped": count, **{f"dropped_{k}": n for k, n in
                                                                                    why.items()}}
    with transaction.atomic():
        clean = freeze_version(version.dataset, (_Entry(pk, h) for pk, h in kept.iterator(chunk_size=5000)),
                               user=user, note=f"{reason}\n{note}".strip(), provenance=provenance, via=via)
        DedupRun.objects.filter(pk=run.pk).update(output_version=clean, dropped_count=count)
        audit.record(user, "dedup.write_version", run, via=via, version=clean.pk, dropped=count,
                     **{f"dropped_{k}": n for k, n in why.items()})
    run.refresh_from_db()
    return clean
