from django import forms

from apps.datasets.importing import FieldMappingForm
from apps.datasets.models import Dataset


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class UploadForm(FieldMappingForm):
    """The browser side of an import: the file plus the field mapping."""

    file = forms.FileField(help_text="JSONL, CSV, Parquet, or a zip of a datasets save_to_disk folder")
    field_order = ["file"]
