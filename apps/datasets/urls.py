"""Dataset versions and export (dataset and prompt pages are in r1studio/urls.py)."""

from django.urls import path

from apps.datasets import export, version_views

urlpatterns = [
    path("versions/<int:pk>/export", export.export_version, name="version_export"),
    path("versions/<int:pk>/", version_views.version_detail, name="version_detail"),
    path("versions/diff", version_views.version_diff, name="version_diff"),
    path("datasets/<slug:name>/versions/", version_views.version_list, name="version_list"),
    path("datasets/<slug:name>/compose", version_views.version_compose, name="version_compose"),
    path("datasets/<slug:name>/freeze", version_views.dataset_freeze, name="dataset_freeze"),
]
