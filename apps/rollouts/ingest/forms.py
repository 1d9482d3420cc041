"""What an ingest asks besides the file, and the ingest_rollouts job."""

from django import forms

from apps.datasets.importing import ServerPathForm
from apps.datasets.models import Dataset
from apps.jobs.kinds import job_kind, jsonable
from apps.rollouts.ingest.errors import IngestFileError
from apps.rollouts.ingest.mappers import FORMATS, VERL_CORRECT_SCORE
from apps.rollouts.ingest.readers import detect_ingest_format
from apps.rollouts.ingest.writer import ingest_file, parse_reward_columns
from apps.rollouts.models import RewardRecipe


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

    correct_recipe = forms.ModelChoiceField(
        queryset=RewardRecipe.objects.all(), required=False, label="Correct by recipe",
        help_text="Decide right and wrong by scoring each rollout with this recipe instead (against the "
                  "reference answer); the source's rewards stay, and its own verdict is kept as source_correct",
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
    """The browser side of an ingest: the file plus the options. Once a file is previewed, the page holds
    it (`held`) and the form may come back without one, with options changed."""

    file = forms.FileField(required=False,
                           help_text="JSONL (ours or a verl dump) or a TRL completions_*.parquet log")
    field_order = ("file",)

    def __init__(self, *args, held: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = held

    def clean_file(self):
        file = self.cleaned_data.get("file")
        if not file and not self.held:
            raise forms.ValidationError("Choose a file to ingest.")
        return file

    def job_params(self, path, fmt: str) -> dict:
        """The ingest_rollouts job's parameters: the held upload, its format, and every option."""
        options = {name: jsonable(value) for name, value in self.cleaned_data.items() if name not in {"file", "format"}}
        return {**options, "path": str(path), "format": fmt}

    def preview_options(self) -> dict:
        """The options a preview of the file depends on."""
        data = self.cleaned_data
        return {"instruction": data["instruction"], "correct_score": data["correct_score"],
                "reward_columns": data["reward_columns"], "correct_recipe": str(data["correct_recipe"] or "")}


@job_kind("ingest_rollouts", "Ingest rollouts", IngestParamsForm, own_page="rollout_ingest")
def run_ingest(ctx) -> dict:
    params = ctx.params
    result = ingest_file(params["path"], params["format"], dataset=Dataset.objects.get(pk=params["dataset"]), ctx=ctx,
                         partial=params.get("partial", False), model_name=params.get("model_name", ""),
                         instruction=params.get("instruction", ""),
                         correct_score=params.get("correct_score", VERL_CORRECT_SCORE),
                         force=params.get("force", False), reward_columns=params.get("reward_columns", ""),
                         correct_recipe=params.get("correct_recipe"))
    return result.job_summary()
