from django.conf import settings
from django.db import models
from django.urls import reverse


class DedupRun(models.Model):
    """One de-duplication of a dataset version: within it, or against earlier versions."""

    class Scope(models.TextChoices):
        WITHIN = "within", "within the version"
        ACROSS = "across", "against earlier versions"

    class Method(models.TextChoices):
        EXACT = "exact", "exact (normalised text)"
        NEAR = "near", "near-duplicate (MinHash/LSH)"

    class Rule(models.TextChoices):
        FIRST = "first", "keep the first (version order)"
        SHORTEST = "shortest", "keep the shortest"
        LONGEST = "longest", "keep the longest"

    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="dedup_run")
    version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.CASCADE, related_name="dedup_runs")
    against = models.ManyToManyField("datasets.DatasetVersion", blank=True, related_name="+",
                                      help_text="Earlier versions: what is already there is the original")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.WITHIN)
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.NEAR)
    threshold = models.FloatField(default=0.8, help_text="Estimated Jaccard similarity of word 5-shingles")
    rule = models.CharField(max_length=8, choices=Rule.choices, default=Rule.FIRST)
    examples_checked = models.PositiveIntegerField(default=0)
    cluster_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0, help_text="Members of the version that are not "
                                                                        "their cluster's representative")
    finished_at = models.DateTimeField(null=True, blank=True)
    output_version = models.ForeignKey("datasets.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    dropped_count = models.PositiveIntegerField(default=0, help_text="Examples left out of the output version")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("decide_duplicates", "Can keep or drop duplicates and write the clean version")]

    def __str__(self):
        return f"de-duplication #{self.pk} of {self.version}"

    def get_absolute_url(self):
        return reverse("dedup_run", args=[self.pk])


class DuplicateCluster(models.Model):
    class Kind(models.TextChoices):
        EXACT = "exact"
        NEAR = "near"

    class Decision(models.TextChoices):
        UNDECIDED = "undecided"
        RULE = "rule", "by the rule"
        PERSON = "person", "by a person"

    run = models.ForeignKey(DedupRun, on_delete=models.CASCADE, related_name="clusters")
    number = models.PositiveIntegerField(help_text="1, 2, ... in the order of the representatives")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    representative = models.ForeignKey("datasets.Example", on_delete=models.CASCADE, related_name="+")
    size = models.PositiveIntegerField()
    decision = models.CharField(max_length=12, choices=Decision.choices, default=Decision.UNDECIDED)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="dedup_cluster_number_unique")]

    def __str__(self):
        return f"cluster {self.number} of run #{self.run_id}"


class ClusterMember(models.Model):
    """One example of a cluster. `keep` is None until a rule or a person decides; only members of
    the run's own version (not of an earlier one) can be dropped."""

    cluster = models.ForeignKey(DuplicateCluster, on_delete=models.CASCADE, related_name="members")
    example = models.ForeignKey("datasets.Example", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.CASCADE, related_name="+",
                                help_text="The version it was found in: the run's own, or an earlier one")
    position = models.PositiveIntegerField(help_text="Its position in that version")
    similarity = models.FloatField(help_text="To the representative: 1.0 for the same normalised text")
    is_representative = models.BooleanField(default=False)
    keep = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["cluster", "-is_representative", "version", "position"]
        constraints = [models.UniqueConstraint(fields=["cluster", "version", "example"],
                                               name="dedup_member_unique")]
        indexes = [models.Index(fields=["cluster", "keep"], name="dedup_member_keep")]
