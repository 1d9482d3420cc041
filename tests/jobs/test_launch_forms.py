"""The browser launch forms: /jobs/new/<kind>/ with defaults, CPU preset, prefill, preview and launch."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from apps.datasets.models import Dataset, Example, ModelVersion, Prompt
from apps.datasets.versions import freeze_version
from apps.jobs import kinds
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe
from apps.training.forms import CPU_PRESETS

pytestmark = pytest.mark.django_db


class _FormValues(HTMLParser):
    """The values a browser would submit from the page's forms: inputs, checked boxes, selected options."""

    def __init__(self):
        super().__init__()
        self.values, self._select, self._first_option = {}, None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("name") != "csrfmiddlewaretoken":
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.values[a["name"]] = a.get("value", "on")
            else:
                self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select:
            self._first_option.setdefault(self._select, a.get("value", ""))
            if "selected" in a:
                self.values[self._select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            self.values.setdefault(self._select, self._first_option.get(self._select, ""))
            self._select = None


def form_values(response) -> dict:
    parser = _FormValues()
    parser.feed(response.content.decode())
    return parser.values


def new_url(kind, **query):
    url = reverse("job_new", args=[kind])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture
def model(db):
    return ModelVersion.objects.create(name="tiny-base", uri="/models/tiny")


@pytest.fixture(autouse=True)
def prompts(dataset):  # GRPO refuses a dataset with fewer prompts than one draw (the CPU preset's: 64 / 8)
    return [Prompt.objects.create(dataset=dataset, question=f"{i}+1?", reference_answer=str(i + 1),
                                  content_hash=f"h{i}") for i in range(8)]


def grpo_values(admin_client, model, dataset, **overrides) -> dict:
    """What the GRPO page submits with the CPU preset, a model and a dataset chosen, plus overrides."""
    page = admin_client.get(new_url("grpo", preset="cpu", model_version=model.pk, dataset=dataset.pk))
    assert page.status_code == 200
    return form_values(page) | {k: str(v) for k, v in overrides.items()}


class TestLaunchPage:
    def test_grpo_form_shows_the_r1_report_defaults(self, admin_client, model, dataset):
        response = admin_client.get(new_url("grpo"))
        assert response.status_code == 200
        values = form_values(response)
        assert values["num_generations"] == "16"
        assert float(values["learning_rate"]) == 3e-6
        assert float(values["beta"]) == 0.001
        assert values["batch_size"] == "512"
        assert values["max_completion_length"] == "32768"
        assert values["stage"] == ModelVersion.Stage.R1_ZERO
        html = response.content.decode()
        assert "G: the group size" in html  # help text
        assert "KL beta" in html  # label
        assert "?preset=cpu" in html and "Fill with values for the tiny CPU model" in html
        assert f'hx-post="{reverse("job_preview", args=["grpo"])}"' in html
        assert 'id="preview"' in html

    def test_the_cpu_preset_fills_the_tiny_model_values(self, admin_client):
        values = form_values(admin_client.get(new_url("grpo", preset="cpu")))
        preset = CPU_PRESETS["grpo"]
        assert values["num_generations"] == str(preset["num_generations"])
        assert values["batch_size"] == str(preset["batch_size"])
        assert values["max_completion_length"] == str(preset["max_completion_length"])
        assert float(values["learning_rate"]) == preset["learning_rate"]
        assert float(values["beta"]) == preset["beta"]
        assert values["accelerate_config"] == "cpu"
        assert values["top_p"] == "1.0"  # a field the preset leaves alone keeps its default

    def test_get_parameters_prefill_fields(self, admin_client, model):
        values = form_values(admin_client.get(
            new_url("grpo", model_version=model.pk, stage="reasoning_rl", preset="cpu", max_steps=7, bogus=1)))
        assert values["model_version"] == str(model.pk)
        assert values["stage"] == "reasoning_rl"
        assert values["max_steps"] == "7"  # a GET parameter beats the preset
        assert values["num_generations"] == str(CPU_PRESETS["grpo"]["num_generations"])
        assert "bogus" not in values

    def test_a_kind_without_preset_has_no_preset_link(self, admin_client):
        response = admin_client.get(new_url("generate"))
        assert response.status_code == 200
        assert form_values(response)["n"] == "1"
        assert "Fill with values for the tiny CPU model" not in response.content.decode()

    def test_import_prompts_sends_you_to_the_datasets(self, admin_client):
        response = admin_client.get(new_url("import_prompts"), follow=True)
        assert response.redirect_chain[-1][0] == reverse("dataset_list")
        assert "uploaded file" in response.content.decode()

    def test_unknown_kind_is_404(self, admin_client):
        assert admin_client.get(new_url("no_such_kind")).status_code == 404
        assert admin_client.post(new_url("no_such_kind"), {}).status_code == 404
        assert admin_client.post(reverse("job_preview", args=["no_such_kind"]), {}).status_code == 404

    def test_a_viewer_may_not_launch(self, client, users, model, dataset):
        client.force_login(users["viewer"])
        assert client.get(new_url("grpo")).status_code == 403
        assert client.post(new_url("grpo"), {"model_version": model.pk, "dataset": dataset.pk}).status_code == 403
        assert client.post(reverse("job_preview", args=["grpo"]), {}).status_code == 403
        assert not Job.objects.exists()

    def test_the_job_list_has_a_launch_menu_for_launchers_only(self, client, admin_client, users):
        html = admin_client.get(reverse("job_list")).content.decode()
        for kind in ["grpo", "sft", "generate", "evaluate", "rejection_sample", "score_rollouts"]:
            assert f'href="{reverse("job_new", args=[kind])}"' in html
        assert reverse("job_new", args=["import_prompts"]) not in html
        client.force_login(users["viewer"])
        html = client.get(reverse("job_list")).content.decode()
        assert reverse("job_new", args=["grpo"]) not in html


class TestPreview:
    def test_a_valid_grpo_form_previews_steps_and_tokens(self, admin_client, model, dataset, prompts):
        max_steps, batch_size, group, length = 5, 32, 8, 128
        values = grpo_values(admin_client, model, dataset, max_steps=max_steps, batch_size=batch_size,
                             num_generations=group, max_completion_length=length)
        response = admin_client.post(reverse("job_preview", args=["grpo"]), values)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'class="preview valid"' in html
        completions = max_steps * batch_size
        tokens = completions * length
        rows = dict(_table_rows(html))
        assert rows["steps"] == str(max_steps)
        assert rows["rows"] == str(len(prompts))
        assert rows["prompts per step"] == str(batch_size // group)
        assert rows["completions (each stored as a rollout)"] == f"{completions:,}"
        assert rows["tokens to generate (at most)"] == f"{tokens:,}"

    def test_the_sft_preview_counts_epochs_as_the_trainer_does(self, admin_client, model, dataset):
        """10 examples in batches of 4: each pass is 3 steps (4, 4 and a short 2), so 2 epochs are 6 steps."""
        examples = [Example.objects.create(dataset=dataset, messages=Example.chat(f"{i}+1?", f"<answer>{i}</answer>"))
                    for i in range(10)]
        version = freeze_version(dataset, examples)
        values = form_values(admin_client.get(new_url("sft", preset="cpu", model_version=model.pk,
                                                      dataset_version=version.pk)))
        rows = dict(_table_rows(admin_client.post(reverse("job_preview", args=["sft"]),
                                                  values | {"batch_size": 4, "epochs": 2}).content.decode()))
        assert (rows["rows"], rows["steps"], rows["epochs"]) == ("10", "6", "2.0")

    def test_grpo_refuses_a_dataset_without_prompts(self, admin_client, model):
        empty = Dataset.objects.create(name="empty-prompts")
        values = grpo_values(admin_client, model, empty)
        html = admin_client.post(reverse("job_preview", args=["grpo"]), values).content.decode()
        assert 'class="preview invalid"' in html and "empty-prompts has no prompts" in html

    def test_grpo_refuses_fewer_prompts_than_one_generation_draws(self, admin_client, model, dataset, prompts):
        """TRL drops a last, incomplete draw of prompts: with fewer than one draw it would train 0 steps."""
        values = grpo_values(admin_client, model, dataset, batch_size=64, num_generations=8, steps_per_generation=2)
        html = admin_client.post(reverse("job_preview", args=["grpo"]), values).content.decode()
        assert 'class="preview invalid"' in html
        assert "<code>dataset</code>: gsm-mini gives 8 prompts, and one generation draws 16 (batch_size 64 × " \
               "steps_per_generation 2 / num_generations 8)" in html
        values["steps_per_generation"] = "1"
        html = admin_client.post(reverse("job_preview", args=["grpo"]), values).content.decode()
        assert 'class="preview valid"' in html

    def test_the_generation_preview_estimates_rows_tokens_and_time(self, admin_client, model, dataset, prompts):
        Prompt.objects.exclude(pk__in=[p.pk for p in prompts[:3]]).delete()  # three prompts × n=4 samples
        values = {"dataset": dataset.pk, "model_version": model.pk, "template": "r1-zero", "n": 4, "max_tokens": 100,
                  "temperature": 0.6, "top_p": 0.95, "batch_size": 8, "max_batch_retries": 3}
        rows = dict(_table_rows(admin_client.post(reverse("job_preview", args=["generate"]), values).content.decode()))
        assert rows["rows (completions, each stored as a rollout)"] == "12"
        assert rows["tokens to generate (at most)"] == "1,200" and rows["time"].startswith("unknown")
        measured = Job.objects.create(kind="generate", status=Job.Status.SUCCEEDED, params={"model_version": model.pk},
                                      result={"tokens_per_s": 10.0, "tokens_generated": 500, "rollouts_written": 10})
        rows = dict(_table_rows(admin_client.post(reverse("job_preview", args=["generate"]), values).content.decode()))
        assert rows[f"tokens to generate (expected, from job #{measured.pk}'s mean length)"] == "600"  # 12 × 50
        assert rows[f"time (expected, at job #{measured.pk}'s 10 tokens/s)"] == "about 60 s"
        assert rows["time (at most)"] == "about 2 min"  # 120 s

    def test_an_invalid_form_previews_its_errors(self, admin_client, model, dataset):
        values = grpo_values(admin_client, model, dataset, batch_size=30, num_generations=8)
        response = admin_client.post(reverse("job_preview", args=["grpo"]), values)
        assert response.status_code == 200  # htmx swaps only 2xx
        html = response.content.decode()
        assert 'class="preview invalid"' in html
        assert "batch_size" in html and "must be a multiple of the group size" in html

    def test_a_missing_required_field_is_named(self, admin_client):
        response = admin_client.post(reverse("job_preview", args=["grpo"]), {})
        html = response.content.decode()
        assert 'class="preview invalid"' in html
        assert "<code>model_version</code>" in html and "<code>dataset</code>" in html

    def test_a_kind_without_preview_says_valid(self, admin_client):
        recipe = RewardRecipe.latest("r1-zero-math")
        response = admin_client.post(reverse("job_preview", args=["score_rollouts"]), {"recipe": recipe.pk})
        assert response.status_code == 200
        assert "Valid. No preview for this kind." in response.content.decode()

    def test_preview_is_post_only(self, admin_client):
        assert admin_client.get(reverse("job_preview", args=["grpo"])).status_code == 405


class TestLaunch:
    def test_a_batch_not_divisible_by_the_group_is_refused(self, admin_client, model, dataset):
        values = grpo_values(admin_client, model, dataset, batch_size=100, num_generations=16)
        response = admin_client.post(new_url("grpo"), values)
        assert response.status_code == 400
        html = response.content.decode()
        assert 'data-field="batch_size"' in html
        error = html.split('data-field="batch_size"', 1)[1].split("</div>", 1)[0]
        assert "must be a multiple of the group size" in error
        assert form_values(response)["batch_size"] == "100"  # the page keeps what was typed
        assert not Job.objects.exists()

    def test_a_valid_grpo_form_launches_one_job(self, admin_client, users, model, dataset):
        values = grpo_values(admin_client, model, dataset, max_steps=12, stage="reasoning_rl")
        assert "use_vllm" not in values and "use_lora" not in values  # unchecked boxes are not sent
        response = admin_client.post(new_url("grpo"), values)
        job = Job.objects.get()
        assert response.status_code == 302
        assert response.url == reverse("job_detail", args=[job.pk])
        assert job.kind == "grpo" and job.status == Job.Status.QUEUED and job.created_by == users["admin"]
        assert job.queue == "cpu"
        preset = CPU_PRESETS["grpo"]
        assert job.params["model_version"] == model.pk and job.params["dataset"] == dataset.pk
        assert job.params["max_steps"] == 12 and job.params["stage"] == "reasoning_rl"
        assert job.params["num_generations"] == preset["num_generations"]
        assert job.params["batch_size"] == preset["batch_size"]
        assert job.params["learning_rate"] == preset["learning_rate"]
        assert job.params["use_vllm"] is False and job.params["use_lora"] is False
        assert job.params["recipe"] == RewardRecipe.latest("r1-zero-math").pk

    @pytest.mark.parametrize("kind", ["grpo", "evaluate", "rejection_sample"])
    def test_the_chat_template_scores_with_r1s_chat_format_by_default(self, kind, model, dataset):
        """A model prompted through its chat template answers in R1's chat format, not in R1-Zero's tags."""
        params = {"model_version": model.pk, "dataset": dataset.pk, "output_dataset": "kept", "max_steps": 10,
                  "batch_size": 16, "num_generations": 16, "steps_per_generation": 1, "learning_rate": 1e-5}
        chat = kinds.validate_params(kind, params | {"template": "chat"})
        plain = kinds.validate_params(kind, params | {"template": "r1-zero"})
        assert chat["recipe"] == RewardRecipe.latest("r1-chat-math").pk
        assert plain["recipe"] == RewardRecipe.latest("r1-zero-math").pk

    def test_a_checked_box_is_launched_as_true(self, admin_client, model, dataset):
        values = grpo_values(admin_client, model, dataset, use_lora="on")
        assert admin_client.post(new_url("grpo"), values).status_code == 302
        assert Job.objects.get().params["use_lora"] is True

    def test_an_sft_job_on_a_frozen_version(self, admin_client, model, dataset):
        example = Example.objects.create(dataset=dataset, messages=[
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "<think> 1+1=2 </think> <answer> 2 </answer>"},
        ])
        version = freeze_version(dataset, [example])
        page = admin_client.get(new_url("sft", preset="cpu", model_version=model.pk, dataset_version=version.pk))
        values = form_values(page)
        assert values["epochs"] == str(CPU_PRESETS["sft"]["epochs"])
        assert values["stage"] == ModelVersion.Stage.COLD_START

        preview = admin_client.post(reverse("job_preview", args=["sft"]), values).content.decode()
        rows = dict(_table_rows(preview))
        assert rows["rows"] == "1" and rows["steps"] == "1"

        response = admin_client.post(new_url("sft"), values)
        job = Job.objects.get(kind="sft")
        assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
        assert job.params["dataset_version"] == version.pk and job.params["model_version"] == model.pk
        assert job.params["batch_size"] == CPU_PRESETS["sft"]["batch_size"]
        assert job.params["format"] == "chat"
        assert Job.objects.count() == 1

    def test_an_unknown_choice_is_shown_next_to_its_field(self, admin_client, model, dataset):
        values = grpo_values(admin_client, model, dataset, model_version=999999)
        response = admin_client.post(new_url("grpo"), values)
        assert response.status_code == 400
        assert 'data-field="model_version"' in response.content.decode()
        assert not Job.objects.exists()


def _table_rows(html: str):
    """(th text, td text) pairs of the preview table."""

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self._cell, self._row = [], None, []

        def handle_starttag(self, tag, attrs):
            if tag in ("th", "td"):
                self._cell = ""
            elif tag == "tr":
                self._row = []

        def handle_data(self, data):
            if self._cell is not None:
                self._cell += data

        def handle_endtag(self, tag):
            if tag in ("th", "td"):
                self._row.append(self._cell.strip())
                self._cell = None
            elif tag == "tr" and len(self._row) == 2:
                self.rows.append(tuple(self._row))

    parser = Rows()
    parser.feed(html)
    return parser.rows
