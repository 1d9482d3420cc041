"""The column mapping shown before anything lands (upload page, command line, API), and correctness
decided by a stored recipe at ingest."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from apps.api import tokens
from apps.jobs.models import Job
from apps.rollouts.ingest import preview_source
from apps.rollouts.models import RewardRecipe, Rollout
from tests.api.test_api import Api
from tests.conftest import write_jsonl
from tests.rollout_factory import add_prompt
from tests.rollouts.test_ingest import ingest, verl_gsm8k_record, verl_record

pytestmark = pytest.mark.django_db

APPLES = "Tom has 2 apples and buys 2 more. How many now?"


def dapo_dump(tmp_path):
    """A verl dump as _dump_generations writes it with the DAPO scorer (score, acc, pred)."""
    return write_jsonl(tmp_path / "1.jsonl", [verl_record(APPLES, "2 + 2 = 4", 1, 1.0, True),
                                              verl_record(APPLES, "2 + 2 = 5", 1, -1.0, False)])


def test_the_preview_of_a_verl_dump_names_every_column_and_the_correctness_rule(tmp_path):
    preview = preview_source(dapo_dump(tmp_path), "verl", correct_score=0.5)
    roles = {c.column: c.becomes for c in preview.columns}
    assert roles["input"].startswith("the question") and roles["output"] == "completion"
    assert roles["gts"] == "reference answer" and roles["score"] == "total reward; is_correct when ≥ 0.5 " \
                                                                    "(unless an acc is logged)"
    assert roles["acc"] == "is_correct (the reward function's verdict); metadata" and roles["pred"] == "metadata"
    assert preview.metadata_columns == ["acc", "pred"]
    assert [(s["question"], s["total_reward"], s["is_correct"]) for s in preview.samples] == [
        (APPLES, 1.0, True), (APPLES, -1.0, False)]
    assert preview.samples[1]["metadata"] == {"acc": False, "pred": "5"}
    assert preview.correct_rule == "the reward function's acc where logged, else score ≥ 0.5"
    assert "no group id" in preview.notes[0] and preview.records == 2 and not preview.problems


def test_the_preview_lists_bad_records_without_raising(tmp_path):
    path = write_jsonl(tmp_path / "1.jsonl", [{"input": "user\nQ\nassistant\n", "output": 5, "step": 1}])
    preview = preview_source(path, "verl")
    assert preview.problems == ["line 1: field 'score': missing", "line 1: field 'output': expected text, found int"]


def test_the_command_prints_the_mapping_first_and_preview_lands_nothing(dataset, tmp_path, capsys):
    path = dapo_dump(tmp_path)
    call_command("ingest_rollouts", dataset.name, str(path), "--preview")
    captured = capsys.readouterr()
    assert "column mapping:" in captured.err and "  pred    → metadata" in captured.err
    assert json.loads(captured.out)["metadata_columns"] == ["acc", "pred"]
    assert Rollout.objects.count() == 0 and not Job.objects.exists()
    call_command("ingest_rollouts", dataset.name, str(path))
    captured = capsys.readouterr()
    assert "column mapping:" in captured.err and json.loads(captured.out)["landed"] == 2


def test_the_upload_page_previews_then_lands_with_the_options_chosen(admin_client, dataset, tmp_path):
    content = "".join(json.dumps(r) + "\n" for r in [verl_record(APPLES, "4", 1, 0.5, None),
                                                     verl_record(APPLES, "5", 1, 0.0, None)]).encode()
    with override_settings(UPLOAD_DIR=tmp_path):
        first = admin_client.post(reverse("rollout_ingest"), {
            "file": SimpleUploadedFile("1.jsonl", content), "dataset": dataset.pk, "format": "", "correct_score": ""})
        assert first.status_code == 200, first.context["form"].errors
        page = first.content.decode()
        assert "What lands" in page and "Nothing has landed yet" in page and "is_correct when ≥ 1" in page
        assert not Job.objects.exists() and first.context["preview"].format == "verl"
        upload = first.context["upload"]
        held = next(tmp_path.glob("*/1.jsonl"))

        again = admin_client.post(reverse("rollout_ingest"), {  # the file held; the threshold changed
            "upload": upload, "dataset": dataset.pk, "format": "", "correct_score": "0.5", "action": "preview"})
        assert again.status_code == 200 and "is_correct when ≥ 0.5" in again.content.decode()
        assert [s["is_correct"] for s in again.context["preview"].samples] == [True, False]

        landed = admin_client.post(reverse("rollout_ingest"), {
            "upload": upload, "dataset": dataset.pk, "format": "", "correct_score": "0.5", "action": "ingest"})
    job = Job.objects.get(kind="ingest_rollouts")
    assert landed.status_code == 302 and landed.url == reverse("job_detail", args=[job.pk])
    assert (job.params["path"], job.params["format"], job.params["correct_score"]) == (str(held), "verl", 0.5)
    assert upload not in admin_client.session["ingest_uploads"]  # the job owns the file now
    stale = admin_client.post(reverse("rollout_ingest"), {"upload": upload, "dataset": dataset.pk, "action": "ingest"})
    assert stale.status_code == 400 and "Choose a file" in stale.content.decode()


def test_a_file_that_cannot_be_read_is_refused_at_preview_and_not_kept(admin_client, dataset, tmp_path):
    with override_settings(UPLOAD_DIR=tmp_path):
        response = admin_client.post(reverse("rollout_ingest"), {
            "file": SimpleUploadedFile("c.parquet", b"not parquet"), "dataset": dataset.pk, "format": "trl"})
    assert response.status_code == 400 and "file" in response.context["form"].errors
    assert not list(tmp_path.glob("*/c.parquet")) and not admin_client.session["ingest_uploads"]


def test_the_api_returns_the_preview_with_the_job_or_alone(client, users, dataset, tmp_path):
    _, text = tokens.issue_token(users["admin"], "t")
    api = Api(client, text)
    path = dapo_dump(tmp_path)

    def upload(**fields):
        with open(path, "rb") as f:
            return client.post("/api/rollouts/ingest", {"file": f, "dataset": dataset.name, **fields},
                               headers=api.headers)

    alone = upload(preview="true")
    assert alone.status_code == 200, alone.content
    assert alone.json()["metadata_columns"] == ["acc", "pred"] and not Job.objects.exists()
    accepted = upload()
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["ignored_fields"] == ["acc", "pred"] and body["preview"]["format"] == "verl"
    assert body["kind"] == "ingest_rollouts" and body["params"]["format"] == "verl"
    unknown = upload(correct_recipe="no-such-recipe")
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["form", "correct_recipe"]


def test_correctness_can_come_from_a_stored_recipe_and_the_rule_is_recorded(dataset, tmp_path):
    """verl's stock GSM8K scorer wants "#### 72"; a model that answers in R1-Zero's tags scores 0.0 there.
    Re-scored with r1-zero-math, the right answer is right; the source's own verdict stays beside it."""
    stored = add_prompt(dataset, "What is 36 * 2?", "72")
    path = write_jsonl(tmp_path / "1.jsonl", [
        verl_gsm8k_record(stored.question, "<think>36 * 2 = 72</think> <answer>72</answer>", 0.0),
        verl_gsm8k_record(stored.question, "<think>36 * 2 = 62</think> <answer>62</answer>", 0.0)])
    recipe = RewardRecipe.latest("r1-zero-math")
    result = ingest(path, "verl", dataset, correct_recipe=recipe.pk)
    right, wrong = Rollout.objects.order_by("sample_index")
    assert (right.is_correct, right.source_correct, wrong.is_correct, wrong.source_correct) == (
        True, False, False, False)
    assert (right.total_reward, list(right.rewards)) == (0.0, ["score"])  # the source's rewards stay
    assert result.correct_rule.startswith(f"scored with {recipe}")
