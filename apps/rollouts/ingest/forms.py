"""What an ingest asks besides the file, and the ingest_rollouts job."""

from django import forms

from apps.datasets.importing import ServerPathForm
from apps.datasets.models import Dataset
from apps.jobs.kinds import job_kind
from apps.rollouts.ingest.errors import IngestFileError
from apps.rollouts.ingest.mappers import FORMATS, VERL_CORRECT_SCORE
from apps.rollouts.ingest.readers import detect_ingest_format
from apps.rollouts.ingest.writer import ingest_file, parse_reward_columns


class IngestOptionsForm(forms.Form):
    """What an ingest asks besides the file; shared by the upload page and the job."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), help_text="Prompts are matched or created here")
    format = forms.ChoiceField(choices=[("", "detect from the file"), *FORMATS.items()], required=False)
    partial = forms.BooleanField(
        required=False, help_text="Land the good records and list the rejected ones, instead of landing nothing"
    )
    model_name = forms.CharField(
        max_length=200, required=False, help_text="The model that produced the rollouts (registered if new)"
    )
    instruction = forms.CharField(
        max_length=2000, required=False, strip=False,
        help_text="Text your data preparation appended to each question, removed before matching prompts "
                  "(verl's GSM8K and MATH instructions are removed without asking)",
    )
    reward_columns = forms.CharField(
        max_length=2000, required=False,
        help_text="TRL: the columns that are reward functions, with their weights (accuracy_reward=1, "
                  "format_reward=0.5); empty to read them from the run's trainer_state.json. Other columns "
                  "(log_extra) are kept as metadata",
    )
    force = forms.BooleanField(
        required=False, help_text="Land the source again even if an earlier ingest into this dataset landed it",
    )
    correct_score = forms.FloatField(
        initial=VERL_CORRECT_SCORE, required=False, label="Correct from score",
        help_text="verl without an 'acc': a score of at least this counts as right (verl's GSM8K scorer gives 1.0 "
                  "for right, 0.0 for wrong)",
    )

    def clean_reward_columns(self):
        text = self.cleaned_data.get("reward_columns", "")
        try:
            parse_reward_columns(text)
        except IngestFileError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text

    def clean_correct_score(self):
        """Left empty on the page: verl's meaning, written into the job's parameters so the rule is on record."""
        score = self.cleaned_data.get("correct_score")
        return VERL_CORRECT_SCORE if score is None else score


class IngestParamsForm(ServerPathForm, IngestOptionsForm):
    """The parameters of an ingest_rollouts job."""

    detect = staticmethod(detect_ingest_format)


class IngestUploadForm(IngestOptionsForm):
    """The browser side of an ingest: the file plus the options."""

    file = forms.FileField(help_text="JSONL (ours or a verl dump) or a TRL completions_*.parquet log")
    field_order = ("file",)


@job_kind("ingest_rollouts", "Ingest rollouts", IngestParamsForm, own_page="rollout_ingest")
def run_ingest(ctx) -> dict:
    params = ctx.params
    result = ingest_file(params["path"], params["format"], dataset=Dataset.objects.get(pk=params["dataset"]), ctx=ctx,
                         partial=params.get("partial", False), model_name=params.get("model_name", ""),
                         instruction=params.get("instruction", ""),
                         correct_score=params.get("correct_score", VERL_CORRECT_SCORE),
                         force=params.get("force", False), reward_columns=params.get("reward_columns", ""))
    return result.job_summary()
