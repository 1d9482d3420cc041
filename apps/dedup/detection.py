"""Finding duplicates: the `deduplicate` job reads a version's examples (and, across versions, the
earlier versions' first), clusters them with workers.hygiene.near_dup and stores the clusters.

Nothing is decided here: every member starts undecided, and a rule or a person keeps or drops it
(apps/dedup/decisions.py).
"""

from collections.abc import Iterator

import numpy as np
from django import forms
from django.db import transaction
from django.utils import timezone

from apps.core.bulk import bulk_insert
from apps.datasets.models import DatasetVersion, DatasetVersionExample
from apps.dedup.models import ClusterMember, DedupRun, DuplicateCluster
from apps.jobs.kinds import job_kind
from workers.hygiene import near_dup

READ_CHUNK = 2000  # examples read and signed at a time


def example_text(messages) -> str:
    """What two examples are compared by: every message's content, in order."""
    if not isinstance(messages, list):
        return str(messages or "")
    return "\n\n".join(str(m.get("content") or "") if isinstance(m, dict) else str(m) for m in messages)


def _versions_field(**kwargs):
    return forms.ModelMultipleChoiceField(queryset=DatasetVersion.objects.select_related("dataset"), **kwargs)


class DedupParamsForm(forms.Form):
    version = forms.ModelChoiceField(queryset=DatasetVersion.objects.select_related("dataset"),
                                     help_text="The version to de-duplicate")
    against = _versions_field(required=False, help_text="Earlier versions to check it against: an example of the "
                                                         "version already in one of these is the duplicate. "
                                                         "None: duplicates within the version")
    method = forms.ChoiceField(choices=DedupRun.Method.choices, initial=DedupRun.Method.NEAR)
    threshold = forms.FloatField(min_value=0.5, max_value=1.0, initial=near_dup.DEFAULT_THRESHOLD,
                                 help_text="Near duplicates: the least estimated Jaccard similarity of word "
                                           "5-shingles (0.5-1.0)")
    rule = forms.ChoiceField(choices=DedupRun.Rule.choices, initial=DedupRun.Rule.FIRST,
                             help_text="Which member of a cluster is its representative, kept when the rule is "
                                       "applied (against earlier versions: always the earlier example)")

    def clean_version(self):
        version = self.cleaned_data["version"]
        if version.example_count == 0:
            raise forms.ValidationError(f"{version} holds no examples: there is nothing to de-duplicate")
        return version

    def clean(self):
        data = super().clean()
        version, against = data.get("version"), data.get("against")
        if version is not None and against and version in against:
            self.add_error("against", f"{version} cannot be checked against itself")
        return data


@job_kind("deduplicate", "De-duplicate a dataset version", DedupParamsForm, own_page="dataset_list",
          own_page_hint="Open a dataset version and choose De-duplicate.")
def run_deduplicate(ctx) -> dict:
    params = ctx.params
    version = DatasetVersion.objects.select_related("dataset").get(pk=params["version"])
    against = list(DatasetVersion.objects.filter(pk__in=params.get("against") or []))
    against.sort(key=lambda v: params["against"].index(v.pk))  # in the order given
    DedupRun.objects.filter(job=ctx.job).delete()  # a retried job starts over
    run = DedupRun.objects.create(
        job=ctx.job, version=version, scope=DedupRun.Scope.ACROSS if against else DedupRun.Scope.WITHIN,
        method=params["method"], threshold=params["threshold"], rule=params["rule"], created_by=ctx.job.created_by)
    run.against.set(against)
    ctx.log(f"{run.get_method_display()} over {version} ({version.example_count:,} examples)"
            + (f" against {', '.join(map(str, against))}" if against else ""))
    detect(run, ctx)
    ctx.log(f"{run.cluster_count:,} clusters, {run.duplicate_count:,} duplicates")
    return {"dedup_run": run.pk, "examples": run.examples_checked, "clusters": run.cluster_count,
            "duplicates": run.duplicate_count}


def detect(run: DedupRun, ctx=None) -> DedupRun:
    """Cluster the run's examples and store every cluster of two or more, all members undecided."""
    version, against = run.version, list(run.against.all())
    if version.example_count == 0:
        raise ValueError(f"{version} holds no examples: there is nothing to de-duplicate")
    signer = near_dup.Signer(minhash=run.method == DedupRun.Method.NEAR)
    example_ids, version_ids, positions = [], [], []
    total = version.example_count + sum(v.example_count for v in against)
    seen_earlier: set[int] = set()
    done = 0
    for source in [*against, version]:
        earlier = source is not version
        for chunk in _chunks(source):
            done += len(chunk)
            if earlier:  # an example in two earlier versions is one original
                chunk = [row for row in chunk if row[0] not in seen_earlier]
                seen_earlier.update(row[0] for row in chunk)
            signer.add([example_text(messages) for _, _, messages in chunk])
            example_ids.extend(row[0] for row in chunk)
            positions.extend(row[1] for row in chunk)
            version_ids.extend([source.pk] * len(chunk))
            if ctx is not None:
                ctx.progress(done, total)
                ctx.check_cancelled()
    earlier_count = len(example_ids) - version.example_count
    clusters = near_dup.find_clusters(signer, run.method, run.threshold, run.rule, earlier=earlier_count)
    _store(run, clusters, np.asarray(example_ids), np.asarray(version_ids), np.asarray(positions))
    return run


def _chunks(version: DatasetVersion) -> Iterator[list[tuple[int, int, list]]]:
    rows = (DatasetVersionExample.objects.filter(version=version).order_by("position")
            .values_list("example_id", "position", "example__messages").iterator(chunk_size=READ_CHUNK))
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == READ_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _store(run: DedupRun, clusters: list[near_dup.Cluster], example_ids, version_ids, positions) -> None:
    duplicates = 0
    with transaction.atomic():
        bulk_insert(DuplicateCluster, (
            {"run_id": run.pk, "number": number, "kind": cluster.kind, "size": len(cluster.members),
             "representative_id": int(example_ids[cluster.representative]),
             "decision": DuplicateCluster.Decision.UNDECIDED}
            for number, cluster in enumerate(clusters, start=1)))
        cluster_ids = dict(DuplicateCluster.objects.filter(run=run).values_list("number", "pk"))

        def members():
            nonlocal duplicates
            for number, cluster in enumerate(clusters, start=1):
                for index in cluster.members:
                    own = int(version_ids[index]) == run.version_id
                    duplicates += own and index != cluster.representative
                    yield {"cluster_id": cluster_ids[number], "example_id": int(example_ids[index]),
                           "version_id": int(version_ids[index]), "position": int(positions[index]),
                           "similarity": round(cluster.similarity[index], 4),
                           "is_representative": index == cluster.representative, "keep": None}

        bulk_insert(ClusterMember, members())
        DedupRun.objects.filter(pk=run.pk).update(
            examples_checked=run.version.example_count, cluster_count=len(clusters), duplicate_count=duplicates,
            finished_at=timezone.now())
    run.refresh_from_db()

