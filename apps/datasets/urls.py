"""Dataset versions, bulk actions and export (dataset and prompt pages are in r1studio/urls.py)."""

from django.urls import path

from apps.datasets import bulk_views, export, version_views

urlpatterns = [
    path("versions/<int:pk>/export", export.export_version, name="version_export"),
    path("versions/<int:pk>/", version_views.version_detail, name="version_detail"),
    path("versions/diff", version_views.version_diff, name="version_diff"),
    path("datasets/<slug:name>/versions/", version_views.version_list, name="version_list"),
    path("datasets/<slug:name>/compose", version_views.version_compose, name="version_compose"),
    path("datasets/<slug:name>/freeze", version_views.dataset_freeze, name="dataset_freeze"),
    path("rollouts/bulk", bulk_views.rollout_bulk, name="rollout_bulk"),
    path("bulk/", bulk_views.bulk_list, name="bulk_list"),
    path("bulk/<int:pk>/", bulk_views.bulk_detail, name="bulk_detail"),
    path("bulk/<int:pk>/undo", bulk_views.bulk_undo, name="bulk_undo"),
]
