from django import forms
from django.contrib.auth import get_user_model

from apps.curation.models import ReviewQueue
from apps.curation.queues import IMPORT_KIND, eligible_annotators
from apps.datasets.models import Dataset
from apps.jobs.models import Job


class QueueForm(forms.Form):
    """A new review queue. The rollout filter travels as the page's own query string (`filter_query`)."""

    name = forms.CharField(max_length=200)
    source = forms.ChoiceField(choices=ReviewQueue.Source.choices, initial=ReviewQueue.Source.FILTER,
                               widget=forms.RadioSelect)
    filter_query = forms.CharField(required=False, widget=forms.HiddenInput)
    import_job = forms.ModelChoiceField(Job.objects.none(), required=False, label="Import",
                                        help_text="the rollouts one ingest job landed")
    limit = forms.IntegerField(required=False, min_value=1, help_text="at most this many items (in the filter's order)")
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=1, help_text="annotators per item (k)")
    annotators = forms.ModelMultipleChoiceField(get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple)
    target_dataset = forms.ModelChoiceField(Dataset.objects.order_by("name"), to_field_name="name",
                                            help_text="accepted and edited items become examples here")
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                 help_text="Markdown: what to accept, how to rewrite")
    suggested_tags = forms.CharField(required=False, max_length=1000,
                                     help_text="comma-separated, offered on the review screen")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotators"].queryset = eligible_annotators()
        self.fields["import_job"].queryset = Job.objects.filter(kind=IMPORT_KIND).order_by("-pk")
        self.fields["import_job"].label_from_instance = lambda job: f"#{job.pk} {job.label or job.kind}"
        self.fields["annotators"].label_from_instance = lambda user: user.username

    def clean_suggested_tags(self):
        tags = [t.strip() for t in self.cleaned_data["suggested_tags"].split(",") if t.strip()]
        if any(len(t) > 50 for t in tags):
            raise forms.ValidationError("a tag is at most 50 characters")
        return list(dict.fromkeys(tags))

    def clean(self):
        data = super().clean()
        if data.get("source") == ReviewQueue.Source.IMPORT and not data.get("import_job"):
            self.add_error("import_job", "choose the import to review")
        return data


class FreezeForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000)


class AdjudicationForm(forms.Form):
    decision = forms.CharField(max_length=40, error_messages={"required": "choose a decision"})
    version = forms.IntegerField(min_value=1)
    reasoning = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    summary = forms.CharField(required=False, strip=False, widget=forms.Textarea)
