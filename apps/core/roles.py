"""The four groups and what each may do. Kept in step with the models after every migrate."""

from django.contrib.auth.models import Group, Permission

PRODUCT_APPS = ["datasets", "jobs", "training", "rollouts", "curation", "dedup", "decontam"]

VIEWER = "viewer"
ANNOTATOR = "annotator"
REVIEWER = "reviewer"
ADMIN = "admin"

# Each role has the permissions of the one before it plus these (app_label.codename).
_EXTRA = {
    VIEWER: [],
    ANNOTATOR: ["curation.add_annotation", "curation.change_annotation"],
    REVIEWER: [
        "curation.adjudicate",
        "curation.add_reviewqueue",
        "curation.change_reviewqueue",
        "curation.add_reviewitem",
        "curation.change_reviewitem",
        "datasets.add_example",
        "datasets.add_datasetversion",
        "datasets.freeze_version",
        "datasets.export_dataset",
        "dedup.decide_duplicates",
        "decontam.decide_match",
    ],
}
ROLES = [VIEWER, ANNOTATOR, REVIEWER, ADMIN]


def _permissions(codes: list[str]) -> list[Permission]:
    wanted = {tuple(code.split(".")) for code in codes}
    perms = Permission.objects.filter(content_type__app_label__in=PRODUCT_APPS).select_related("content_type")
    return [p for p in perms if (p.content_type.app_label, p.codename) in wanted]


def ensure_roles(**kwargs) -> None:
    product = Permission.objects.filter(content_type__app_label__in=PRODUCT_APPS)
    codes: list[str] = [
        f"{p.content_type.app_label}.{p.codename}" for p in product.select_related("content_type")
        if p.codename.startswith("view_")
    ]
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        if role == ADMIN:
            # Everything, including launching jobs and imports, and reading the audit log.
            audit = Permission.objects.filter(content_type__app_label="core", codename="view_auditevent")
            group.permissions.set([*product, *audit])
            continue
        codes += _EXTRA[role]
        group.permissions.set(_permissions(codes))
