from django import forms

from apps.datasets.importing import FORMATS
from apps.datasets.models import Dataset


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class UploadForm(forms.Form):
    """The browser side of an import: the file plus the field mapping."""

    file = forms.FileField(help_text="JSONL, CSV, Parquet, or a zip of a datasets save_to_disk folder")
    format = forms.ChoiceField(choices=[("", "detect from the file name")] + [(f, f) for f in FORMATS], required=False)
    split = forms.CharField(max_length=100, required=False)
    question_field = forms.CharField(max_length=200, initial="question")
    answer_field = forms.CharField(max_length=200, initial="answer", required=False)
    tests_field = forms.CharField(max_length=200, initial="tests", required=False)
    domain_field = forms.CharField(max_length=200, initial="domain", required=False)
    language_field = forms.CharField(max_length=200, initial="language", required=False)
    default_domain = forms.CharField(max_length=32, initial="math", required=False)
    default_language = forms.CharField(max_length=16, initial="en", required=False)
    metadata_fields = forms.CharField(max_length=2000, initial="*", required=False)
