"""Dataset versions, bulk actions and export (dataset and prompt pages are in r1studio/urls.py)."""

from django.urls import path

from apps.datasets import export

urlpatterns = [
    path("versions/<int:pk>/export", export.export_version, name="version_export"),
]
