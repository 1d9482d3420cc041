from django import forms
from django.contrib.auth import get_user_model

from apps.curation.models import ReviewQueue
from apps.curation.queues import IMPORT_KIND, MAX_SEED, eligible_annotators
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
    limit = forms.IntegerField(required=False, min_value=1,
                               help_text="at most this many items (the first in the order below)")
    order = forms.ChoiceField(
        choices=[("spread", "Spread across prompts: one rollout of each prompt, then a second of each, …, "
                            "in a random order fixed by the seed"),
                 ("filter", "The filter's own order (its sort)")],
        initial="spread", required=False, widget=forms.RadioSelect,
        help_text="spread: a limit of N covers as many prompts as it can, not N samples of a few prompts")
    seed = forms.IntegerField(required=False, min_value=0, max_value=MAX_SEED, initial=0,
                              help_text="the same seed and filter give the same items in the same order")
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=1, help_text="annotators per item (k)")
    annotators = forms.ModelMultipleChoiceField(get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple)
    target_dataset = forms.ModelChoiceField(Dataset.objects.order_by("name"), to_field_name="name", required=False,
                                            help_text="accepted and edited items become examples here")
    new_dataset = forms.SlugField(max_length=100, required=False, label="Or a new target dataset",
                                  help_text="made with the queue: letters, digits, hyphens and underscores")
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                 help_text="Markdown: what to accept, how to rewrite")
    suggested_tags = forms.CharField(required=False, max_length=1000,
                                     help_text="comma-separated, offered on the review screen")

    def __init__(self, *args, can_create_dataset: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_create_dataset:  # say plainly where a target comes from instead of offering what is refused
            del self.fields["new_dataset"]
            self.fields["target_dataset"].help_text = ("accepted and edited items become examples here; it must "
                                                       "exist already (an admin creates datasets)")
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
        existing, new = data.get("target_dataset"), data.get("new_dataset")
        if existing and new:
            self.add_error("new_dataset", "choose an existing dataset or name a new one, not both")
        elif not existing and not new and "target_dataset" not in self.errors and "new_dataset" not in self.errors:
            self.add_error("target_dataset", "choose the dataset accepted items go into"
                                             + (" (or name a new one below)" if "new_dataset" in self.fields else ""))
        data["order"] = data.get("order") or "spread"
        if data["order"] == "spread" and data.get("seed") is None:
            data["seed"] = 0
        return data

    @property
    def queue_seed(self) -> int | None:
        """The seed build_queue takes: None keeps the filter's order."""
        return self.cleaned_data["seed"] if self.cleaned_data["order"] == "spread" else None


class FreezeForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000)


class AdjudicationForm(forms.Form):
    decision = forms.CharField(max_length=40, error_messages={"required": "choose a decision"})
    version = forms.IntegerField(min_value=1)
    reasoning = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    summary = forms.CharField(required=False, strip=False, widget=forms.Textarea)
