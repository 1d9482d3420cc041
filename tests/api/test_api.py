"""The REST API: tokens, permissions, errors and each endpoint, through real HTTP requests to the app."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.api import tokens
from apps.api.models import ApiToken
from apps.core.models import AuditEvent
from apps.datasets.models import DatasetVersion, Example
from apps.jobs import launching
from apps.jobs.models import Job
from tests.conftest import wait_for_job, write_jsonl
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Five users per test with the production hasher cost seconds of CPU shared with other test runs.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Api:
    """The test client with a bearer token; JSON bodies in and out."""

    def __init__(self, client, token: str | None):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, params=None):
        return self.client.get("/api" + path, params or {}, headers=self.headers)

    def post(self, path, body=None):
        return self.client.post("/api" + path, json.dumps(body or {}), content_type="application/json",
                                headers=self.headers)

    def patch(self, path, body):
        return self.client.patch("/api" + path, json.dumps(body), content_type="application/json",
                                 headers=self.headers)


@pytest.fixture
def api_as(client, users):
    def as_role(role):
        _, text = tokens.issue_token(users[role], f"{role} test token")
        return Api(client, text)

    return as_role


def make_examples(dataset, n, start=0):
    return [Example.objects.create(dataset=dataset, source="manual", messages=[
        {"role": "user", "content": f"question {i}"},
        {"role": "assistant", "content": f"<think>\nr{i}\n</think>\n\n{i}"},
    ]) for i in range(start, start + n)]


# ----- tokens and authentication


class TestTokens:
    def test_no_token_is_a_401_that_says_how_to_authenticate(self, client, users):
        response = client.get("/api/datasets")
        assert response.status_code == 401
        assert response["Content-Type"].startswith("application/json")
        assert "Authorization: Bearer" in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_a_session_login_is_not_an_api_token(self, admin_client):
        assert admin_client.get("/api/datasets").status_code == 401

    @pytest.mark.parametrize("header, message", [
        ("Bearer nonsense", "Malformed"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer"),
        ("Bearer r1_0123abcd_" + "x" * 43, "Invalid API token"),
    ])
    def test_a_bad_token_is_a_401(self, client, users, header, message):
        response = client.get("/api/datasets", headers={"Authorization": header})
        assert response.status_code == 401
        assert message in response.json()["detail"]

    def test_a_wrong_secret_for_a_real_prefix_is_refused(self, client, users):
        _, text = tokens.issue_token(users["viewer"], "laptop")
        forged = text[: -4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
        assert client.get("/api/datasets", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert client.get("/api/datasets", headers={"Authorization": f"Bearer {text}"}).status_code == 200

    def test_only_a_hash_is_stored_and_use_is_recorded(self, client, users):
        token, text = tokens.issue_token(users["viewer"], "laptop")
        assert text.startswith(f"r1_{token.prefix}_")
        secret = text.split("_", 2)[2]
        assert secret not in token.secret_hash and len(token.secret_hash) == 64
        assert token.last_used_at is None
        client.get("/api/datasets", headers={"Authorization": f"Bearer {text}"})
        token.refresh_from_db()
        assert token.last_used_at is not None

    def test_a_revoked_token_is_a_401(self, client, users):
        token, text = tokens.issue_token(users["viewer"], "laptop")
        assert tokens.revoke(token, users["viewer"]) is True
        response = client.get("/api/datasets", headers={"Authorization": f"Bearer {text}"})
        assert response.status_code == 401
        assert "revoked" in response.json()["detail"]

    def test_a_disabled_users_token_is_a_401(self, client, users):
        _, text = tokens.issue_token(users["viewer"], "laptop")
        users["viewer"].is_active = False
        users["viewer"].save()
        response = client.get("/api/datasets", headers={"Authorization": f"Bearer {text}"})
        assert response.status_code == 401 and "disabled" in response.json()["detail"]

    def test_the_tokens_page_creates_a_token_once_and_revokes_it(self, client, users):
        client.force_login(users["viewer"])
        page = client.post(reverse("api_tokens"), {"name": "my laptop"})
        assert page.status_code == 200
        token = ApiToken.objects.get(user=users["viewer"])
        shown = page.context["issued"]
        assert shown.startswith(f"r1_{token.prefix}_") and shown in page.content.decode()
        listing = client.get(reverse("api_tokens")).content.decode()
        assert "my laptop" in listing and shown not in listing  # shown once only
        assert client.get("/api/datasets", headers={"Authorization": f"Bearer {shown}"}).status_code == 200
        client.post(reverse("api_token_revoke", args=[token.pk]))
        assert client.get("/api/datasets", headers={"Authorization": f"Bearer {shown}"}).status_code == 401
        events = list(AuditEvent.objects.order_by("id").values_list("action", "actor__username", "via"))
        assert events == [("token.create", "viewer_user", "web"), ("token.revoke", "viewer_user", "web")]

    def test_the_tokens_page_refuses_a_blank_name_and_others_tokens(self, client, users):
        client.force_login(users["viewer"])
        assert client.post(reverse("api_tokens"), {"name": "  "}).status_code == 400
        other, _ = tokens.issue_token(users["admin"], "admin's")
        assert client.post(reverse("api_token_revoke", args=[other.pk])).status_code == 404
        other.refresh_from_db()
        assert other.revoked_at is None

    def test_a_user_in_no_group_may_read_nothing(self, client, users):
        _, text = tokens.issue_token(users["stranger"], "no role")
        for path, permission in [("/datasets", "datasets.view_dataset"), ("/rollouts", "rollouts.view_rollout"),
                                 ("/jobs", "jobs.view_job"), ("/annotations", "curation.view_annotation"),
                                 ("/prompts", "datasets.view_prompt"), ("/recipes", "rollouts.view_rewardrecipe")]:
            response = client.get("/api" + path, headers={"Authorization": f"Bearer {text}"})
            assert response.status_code == 403 and response.json()["permission"] == permission

    def test_the_tokens_page_needs_a_login(self, client):
        response = client.get(reverse("api_tokens"))
        assert response.status_code == 302 and "/accounts/login" in response["Location"]

    def test_the_command_prints_a_working_token(self, client, users, capsys):
        call_command("create_api_token", "reviewer_user", "ci")
        text = capsys.readouterr().out.strip()
        assert client.get("/api/datasets", headers={"Authorization": f"Bearer {text}"}).status_code == 200
        assert AuditEvent.objects.get(action="token.create").via == "cli"


# ----- schema and docs


class TestSchema:
    def test_the_openapi_document_describes_every_operation_and_the_auth(self, client):
        schema = client.get("/api/openapi.json").json()
        assert schema["components"]["securitySchemes"]["TokenAuth"] == {"type": "http", "scheme": "bearer"}
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                assert operation.get("summary"), f"{method} {path} has no summary"
                assert operation["security"] == [{"TokenAuth": []}]
                assert "401" in operation["responses"]

    def test_every_list_documents_its_total(self, client):
        schema = client.get("/api/openapi.json").json()
        components = schema["components"]["schemas"]
        lists = []
        for path, operations in schema["paths"].items():
            ref = operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {}).get(
                "application/json", {}).get("schema", {}).get("$ref", "")
            properties = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
            if {"items", "next"} <= set(properties):
                lists.append(path)
                assert properties["total"]["type"] == "integer", path
                assert properties["total_is_estimate"]["type"] == "boolean", path
        assert sorted(lists) == ["/api/annotations", "/api/datasets", "/api/datasets/{name}/versions",
                                 "/api/decontam/{check_id}/matches", "/api/dedup/runs/{run_id}/clusters", "/api/jobs",
                                 "/api/judge-prompts", "/api/prompts", "/api/recipes", "/api/rollouts"]

    def test_the_docs_page_loads_nothing_from_outside(self, client):
        page = client.get("/api/docs")
        assert page.status_code == 200
        html = page.content.decode()
        assert "http://" not in html and "https://" not in html and "cdn" not in html.lower()
        for url in ("/api/docs/assets/swagger-ui-bundle.js", "/api/docs/assets/swagger-ui.css"):
            assert url in html
            response = client.get(url)
            assert response.status_code == 200 and b"".join(response.streaming_content)
        assert client.get("/api/docs/assets/..%2Fsettings.py").status_code == 404


# ----- datasets, versions, prompts


class TestDatasets:
    def test_list_get_and_create(self, api_as, dataset):
        viewer, admin = api_as("viewer"), api_as("admin")
        listing = viewer.get("/datasets").json()
        assert [d["name"] for d in listing["items"]] == ["gsm-mini"] and listing["next"] is None
        assert viewer.get("/datasets/gsm-mini").json()["prompt_count"] == 0
        assert viewer.get("/datasets/nope").status_code == 404
        refused = viewer.post("/datasets", {"name": "new-set"})
        assert refused.status_code == 403 and refused.json()["permission"] == "datasets.add_dataset"
        created = admin.post("/datasets", {"name": "new-set", "description": "from the API"})
        assert created.status_code == 201 and created.json()["created_by"] == "admin_user"
        again = admin.post("/datasets", {"name": "new-set"})
        assert again.status_code == 422 and again.json()["detail"][0]["loc"] == ["body", "name"]
        bad = admin.post("/datasets", {"name": "has spaces"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "name"

    def test_prompts_filter_by_dataset_and_search(self, api_as, dataset):
        add_prompt(dataset, "How many clips did Natalia sell?")
        add_prompt(dataset, "What is the area of a circle of radius 2?")
        viewer = api_as("viewer")
        found = viewer.get("/prompts", {"dataset": "gsm-mini", "q": "clips"}).json()
        assert [p["question"] for p in found["items"]] == ["How many clips did Natalia sell?"]
        assert (found["total"], found["total_is_estimate"]) == (1, False)
        assert viewer.get("/prompts", {"dataset": "gsm-mini", "limit": 1}).json()["total"] == 2
        assert viewer.get("/prompts", {"dataset": "other"}).json()["items"] == []
        assert viewer.get("/prompts", {"after": "not-a-cursor"}).status_code == 422


class TestVersions:
    def test_a_viewer_freezing_a_version_gets_a_403_naming_the_permission(self, api_as, dataset):
        make_examples(dataset, 2)
        response = api_as("viewer").post("/datasets/gsm-mini/versions", {"all_examples": True})
        assert response.status_code == 403
        assert response.json()["permission"] == "datasets.freeze_version"
        assert "datasets.freeze_version" in response.json()["detail"]
        assert DatasetVersion.objects.count() == 0

    def test_a_reviewer_freezes_a_version_and_it_is_audited(self, api_as, dataset):
        examples = make_examples(dataset, 3)
        reviewer = api_as("reviewer")
        chosen = [examples[2].pk, examples[0].pk]
        response = reviewer.post("/datasets/gsm-mini/versions", {"example_ids": chosen, "note": "first cut"})
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["number"], body["example_count"], body["note"]) == (1, 2, "first cut")
        version = DatasetVersion.objects.get(pk=body["id"])
        assert [e.pk for e in version.ordered_examples()] == chosen
        assert body["content_hash"] == version.content_hash
        event = AuditEvent.objects.get(action="version.freeze")
        assert (event.actor.username, event.via, event.target_id) == ("reviewer_user", "api", str(version.pk))
        assert reviewer.get(f"/versions/{version.pk}").json()["provenance"] == version.provenance
        listing = reviewer.get("/datasets/gsm-mini/versions").json()
        assert [v["id"] for v in listing["items"]] == [version.pk]

    @pytest.mark.parametrize("body, field, message", [
        ({}, "example_ids", "exactly one"),
        ({"example_ids": [], "all_examples": False}, "example_ids", "at least one"),
        ({"example_ids": [10**9]}, "example_ids", "Not examples of dataset"),
        ({"example_ids": "all"}, "example_ids", ""),
    ])
    def test_a_bad_freeze_is_a_422_naming_the_field(self, api_as, dataset, body, field, message):
        make_examples(dataset, 1)
        response = api_as("reviewer").post("/datasets/gsm-mini/versions", body)
        assert response.status_code == 422
        error = response.json()["detail"][0]
        assert field in error["loc"] and message in error["msg"]

    def test_repeated_ids_are_refused(self, api_as, dataset):
        example = make_examples(dataset, 1)[0]
        response = api_as("reviewer").post("/datasets/gsm-mini/versions", {"example_ids": [example.pk, example.pk]})
        assert response.status_code == 422 and "repeated" in response.json()["detail"][0]["msg"]


# ----- rollouts


@pytest.fixture
def rollout_job(db):
    return Job.objects.create(kind="generate", status="succeeded")


class TestRollouts:
    def test_filtered_and_keyset_paged_through_every_page(self, api_as, dataset, rollout_job):
        prompt = add_prompt(dataset, "How many clips?")
        correct = [solved()] * 23
        wrong = [solved("71")] * 7
        add_rollouts(rollout_job, prompt, correct + wrong, is_correct=[True] * 23 + [False] * 7,
                     total_reward=[float(i % 5) for i in range(30)])
        viewer = api_as("viewer")
        for sort, key in (("", lambda r: -r["id"]), ("reward", lambda r: (-r["total_reward"], -r["id"]))):
            seen, after, pages = [], None, 0
            while True:
                params = {"correct": "yes", "job": rollout_job.pk, "limit": 5, **({"sort": sort} if sort else {})}
                response = viewer.get("/rollouts", params | ({"after": after} if after else {}))
                assert response.status_code == 200, response.content
                body = response.json()
                assert (body["total"], body["total_is_estimate"]) == (23, False)  # the whole list, on every page
                seen += body["items"]
                pages += 1
                after = body["next"]
                if after is None:
                    break
            assert pages == 5 and len(seen) == 23
            assert len({r["id"] for r in seen}) == 23 and all(r["is_correct"] for r in seen)
            assert seen == sorted(seen, key=key)
        item = seen[0]
        assert item["job"] == rollout_job.pk and item["prompt"] == prompt.pk
        assert item["answer"] == "72" and "48 clips" in item["reasoning"] and item["completion"].startswith("<think>")

    @pytest.mark.parametrize("params, field", [
        ({"step_min": 5, "step_max": 2}, "step_max"),
        ({"component_min": 0.5}, "component"),
        ({"dataset": "no-such-dataset"}, "dataset"),
        ({"correct": "maybe"}, "correct"),
        ({"reward_min": "nan"}, "reward_min"),
        ({"after": "1.5~x", "sort": "reward"}, "after"),
    ])
    def test_a_bad_filter_is_a_422_naming_the_field(self, api_as, params, field):
        response = api_as("viewer").get("/rollouts", params)
        assert response.status_code == 422, response.content
        assert response.json()["detail"][0]["loc"][-1] == field


# ----- jobs


class TestJobs:
    def test_create_list_and_cancel(self, api_as, dataset, tmp_path):
        path = write_jsonl(tmp_path / "a.jsonl", [{"question": "1+1?", "answer": "2"}])
        admin = api_as("admin")
        created = admin.post("/jobs", {"kind": "import_prompts", "params": {"dataset": dataset.pk, "path": str(path)},
                                       "label": "from the API"})
        assert created.status_code == 201, created.content
        job = created.json()
        assert (job["kind"], job["status"], job["label"], job["created_by"]) == (
            "import_prompts", "queued", "from the API", "admin_user")
        assert AuditEvent.objects.get(action="job.launch").via == "api"
        listing = admin.get("/jobs", {"status": "queued"}).json()
        assert [j["id"] for j in listing["items"]] == [job["id"]]
        assert admin.get("/jobs", {"status": "running"}).json()["items"] == []
        assert admin.get(f"/jobs/{job['id']}").json()["params"]["path"] == str(path)
        cancelled = admin.post(f"/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert AuditEvent.objects.get(action="job.cancel").via == "api"
        again = admin.post(f"/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    def test_bad_params_are_a_422_naming_the_field(self, api_as, dataset):
        admin = api_as("admin")
        response = admin.post("/jobs", {"kind": "import_prompts", "params": {"dataset": dataset.pk,
                                                                             "path": "/nonexistent.jsonl"}})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "params", "path"]
        unknown = admin.post("/jobs", {"kind": "no_such_kind"})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "kind"
        assert Job.objects.count() == 0

    def test_each_kinds_parameters_are_typed_in_the_openapi_schema(self, client):
        from apps.jobs.kinds import KINDS

        schema = client.get("/api/openapi.json").json()
        components = schema["components"]["schemas"]
        body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["discriminator"]["propertyName"] == "kind"
        refs = {ref["$ref"].rsplit("/", 1)[-1] for ref in body["oneOf"]}
        assert set(body["discriminator"]["mapping"]) == set(KINDS) and "score_completions" in KINDS
        assert len(refs) == len(KINDS)
        for kind, ref in body["discriminator"]["mapping"].items():
            one = components[ref.rsplit("/", 1)[-1]]
            assert one["properties"]["kind"]["const"] == kind
        generate = components["GenerateParams"]
        fields = generate["properties"]
        assert {"dataset", "model_version"} <= set(generate["required"])
        assert fields["dataset"]["type"] == "integer" and "dataset id" in fields["dataset"]["description"]
        assert (fields["n"]["type"], fields["n"]["default"], fields["n"]["description"]) == (
            "integer", 1, "Samples per prompt")
        assert fields["temperature"]["type"] == "number" and fields["template"]["type"] == "string"
        assert components["SftParams"]["properties"]["lr_scheduler"]["enum"] == ["constant_with_warmup", "cosine",
                                                                                 "linear"]
        assert components["SftParams"]["properties"]["use_lora"]["anyOf"][0]["type"] == "boolean"

    def test_an_unknown_kind_and_a_wrong_typed_parameter_are_422s_naming_them(self, api_as, dataset):
        admin = api_as("admin")
        unknown = admin.post("/jobs", {"kind": "no_such_kind", "params": {}})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "kind"]
        assert "generate" in unknown.json()["detail"][0]["msg"]  # the known kinds are listed
        missing = admin.post("/jobs", {"params": {}})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "kind"]
        wrong = admin.post("/jobs", {"kind": "generate", "params": {"dataset": dataset.pk, "model_version": 1,
                                                                    "n": "many"}})
        assert wrong.status_code == 422 and [e["loc"] for e in wrong.json()["detail"]] == [["body", "params", "n"]]
        choice = admin.post("/jobs", {"kind": "sft", "params": {"model_version": 1, "dataset_version": 1,
                                                                "lr_scheduler": "exponential"}})
        assert choice.status_code == 422
        assert [e["loc"] for e in choice.json()["detail"]] == [["body", "params", "lr_scheduler"]]
        # Typed right, refused by the form: still named the same way.
        form = admin.post("/jobs", {"kind": "generate", "params": {"dataset": dataset.pk, "model_version": 10**6}})
        assert form.status_code == 422 and form.json()["detail"][0]["loc"] == ["body", "params", "model_version"]
        assert Job.objects.count() == 0

    def test_typed_parameters_reach_the_form_as_sent(self, api_as, dataset, tmp_path):
        """Left-out parameters take the form's initial values; values of the right type in another JSON
        spelling (a number as text) are typed before the form sees them."""
        path = write_jsonl(tmp_path / "a.jsonl", [{"question": "1+1?", "answer": "2"}])
        created = api_as("admin").post("/jobs", {"kind": "import_prompts", "params": {
            "dataset": str(dataset.pk), "path": str(path), "not_a_parameter": 1}})
        assert created.status_code == 201, created.content
        params = created.json()["params"]
        assert (params["dataset"], params["question_field"], params["format"]) == (dataset.pk, "question", "jsonl")
        assert "not_a_parameter" not in params

    def test_launching_and_cancelling_need_their_permissions(self, api_as, dataset, tmp_path):
        path = write_jsonl(tmp_path / "a.jsonl", [])
        reviewer = api_as("reviewer")
        response = reviewer.post("/jobs", {"kind": "import_prompts", "params": {"dataset": dataset.pk,
                                                                                "path": str(path)}})
        assert response.status_code == 403 and response.json()["permission"] == "jobs.launch_job"
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
        response = reviewer.post(f"/jobs/{job.pk}/cancel")
        assert response.status_code == 403 and response.json()["permission"] == "jobs.cancel_job"
        assert reviewer.get(f"/jobs/{job.pk}").json()["status"] == "queued"
        assert reviewer.get("/jobs/999999").status_code == 404


class TestComposeDiffExport:
    def test_compose_and_diff(self, api_as, dataset):
        examples = make_examples(dataset, 6)
        reviewer = api_as("reviewer")
        first = reviewer.post("/datasets/gsm-mini/versions", {"example_ids": [e.pk for e in examples[:4]]}).json()
        second = reviewer.post("/datasets/gsm-mini/versions", {"example_ids": [e.pk for e in examples[2:]]}).json()
        diff = reviewer.get(f"/versions/{first['id']}/diff/{second['id']}").json()
        assert (diff["added"], diff["removed"], diff["kept"]) == (2, 2, 2)
        assert {e["id"] for e in diff["added_samples"]} == {examples[4].pk, examples[5].pk}
        assert {e["id"] for e in diff["removed_samples"]} == {examples[0].pk, examples[1].pk}
        composed = reviewer.post("/datasets/gsm-mini/versions/compose", {
            "parts": [{"version": first["id"], "count": 3}, {"version": second["id"], "count": 1}], "seed": 7,
        })
        assert composed.status_code == 201, composed.content
        body = composed.json()
        sources = body["provenance"]["composed_from"]
        assert [(s["version"], s["count"]) for s in sources] == [(first["id"], 3), (second["id"], 1)]
        assert body["provenance"]["seed"] == 7
        event = AuditEvent.objects.get(action="version.compose")
        assert (event.via, event.target_id) == ("api", str(body["id"]))
        assert AuditEvent.objects.filter(action="version.freeze").count() == 2  # one event per freeze, no doubles

    def test_compose_refusals_name_the_problem(self, api_as, dataset):
        examples = make_examples(dataset, 2)
        reviewer = api_as("reviewer")
        version = reviewer.post("/datasets/gsm-mini/versions", {"all_examples": True}).json()
        too_many = reviewer.post("/datasets/gsm-mini/versions/compose", {"parts": [{"version": version["id"],
                                                                                   "count": 5}]})
        assert too_many.status_code == 422 and "cannot take 5" in too_many.json()["detail"][0]["msg"]
        missing = reviewer.post("/datasets/gsm-mini/versions/compose", {"parts": [{"version": 10**9, "count": 1}]})
        assert missing.status_code == 422 and str(10**9) in missing.json()["detail"][0]["msg"]
        viewer = api_as("viewer").post("/datasets/gsm-mini/versions/compose", {"parts": [{"version": version["id"],
                                                                                          "count": 1}]})
        assert viewer.status_code == 403 and viewer.json()["permission"] == "datasets.freeze_version"
        assert len(examples) == 2 and DatasetVersion.objects.count() == 1

    @pytest.mark.parametrize("fmt", ["messages", "raw", "parquet"])
    def test_the_export_streams_a_file_that_load_dataset_reads(self, api_as, dataset, tmp_path, fmt):
        from datasets import load_dataset

        examples = make_examples(dataset, 5)
        reviewer = api_as("reviewer")
        version = reviewer.post("/datasets/gsm-mini/versions", {"example_ids": [e.pk for e in examples]}).json()
        assert api_as("annotator").get(f"/versions/{version['id']}/export").status_code == 403
        response = reviewer.get(f"/versions/{version['id']}/export", {"format": fmt})
        assert response.status_code == 200 and response.streaming
        path = tmp_path / ("export.parquet" if fmt == "parquet" else "export.jsonl")
        with open(path, "wb") as out:
            out.writelines(response.streaming_content)
        loaded = load_dataset("parquet" if fmt == "parquet" else "json", data_files=str(path), split="train",
                              cache_dir=str(tmp_path / "hf-cache"))
        assert len(loaded) == 5
        assert loaded[0]["messages"] == examples[0].messages
        assert response["X-Content-Hash"] == version["content_hash"]
        event = AuditEvent.objects.get(action="version.export")
        assert (event.via, event.actor.username) == ("api", "reviewer_user")

    def test_an_unknown_export_format_is_a_422(self, api_as, dataset):
        make_examples(dataset, 1)
        reviewer = api_as("reviewer")
        version = reviewer.post("/datasets/gsm-mini/versions", {"all_examples": True}).json()
        response = reviewer.get(f"/versions/{version['id']}/export", {"format": "csv"})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "format"]


# ----- annotations


@pytest.fixture
def annotation(db, dataset, users, rollout_job):
    from apps.curation.models import Annotation, ReviewItem, ReviewQueue

    prompt = add_prompt(dataset, "How many clips?")
    rollout = add_rollouts(rollout_job, prompt, [solved()])[0]
    queue = ReviewQueue.objects.create(name="cold start")
    item = ReviewItem.objects.create(queue=queue, rollout=rollout, position=1)
    return Annotation.objects.create(item=item, annotator=users["annotator"])


class TestAnnotations:
    def test_list_and_filter(self, api_as, annotation):
        viewer = api_as("viewer")
        items = viewer.get("/annotations", {"queue": annotation.item.queue_id, "annotator": "annotator_user"})
        assert [a["id"] for a in items.json()["items"]] == [annotation.pk]
        assert items.json()["items"][0]["rollout"] == annotation.item.rollout_id
        assert viewer.get("/annotations", {"annotator": "reviewer_user"}).json()["items"] == []

    def test_private_notes_reach_only_the_annotator_reviewers_and_admins(self, api_as, annotation, users, client):
        annotation.notes = "I think the reference answer is wrong"
        annotation.save()
        notes = {role: api_as(role).get("/annotations").json()["items"][0]["notes"]
                 for role in ("viewer", "annotator", "reviewer", "admin")}
        assert notes == {"viewer": "", "annotator": annotation.notes, "reviewer": annotation.notes,
                         "admin": annotation.notes}
        page = f"/rollouts/{annotation.item.rollout_id}/"
        for role, shown in (("viewer", False), ("reviewer", True), ("annotator", True)):
            client.force_login(users[role])
            assert ("reference answer is wrong" in client.get(page).content.decode()) is shown, role

    def test_patch_saves_and_a_stale_version_is_a_409_naming_who_saved(self, api_as, annotation):
        annotator = api_as("annotator")
        saved = annotator.patch(f"/annotations/{annotation.pk}", {
            "expected_version": 1, "verdict": "edit", "edited_reasoning": "48 + 24 = 72", "edited_summary": "72",
            "readability": 4, "tags": ["clean"],
        })
        assert saved.status_code == 200, saved.content
        assert (saved.json()["version"], saved.json()["verdict"], saved.json()["tags"]) == (2, "edit", ["clean"])
        stale = annotator.patch(f"/annotations/{annotation.pk}", {"expected_version": 1, "verdict": "reject"})
        assert stale.status_code == 409
        assert "annotator_user" in stale.json()["detail"] and stale.json()["current_version"] == 2
        annotation.refresh_from_db()
        assert annotation.verdict == "edit" and annotation.version == 2  # the stale save changed nothing
        assert AuditEvent.objects.get(action="annotation.edit").via == "api"

    def test_only_the_annotator_may_change_it_and_bad_values_are_named(self, api_as, annotation):
        other = api_as("reviewer").patch(f"/annotations/{annotation.pk}", {"expected_version": 1, "verdict": "accept"})
        assert other.status_code == 403 and "annotator_user" in other.json()["detail"]
        viewer = api_as("viewer").patch(f"/annotations/{annotation.pk}", {"expected_version": 1, "verdict": "accept"})
        assert viewer.status_code == 403 and viewer.json()["permission"] == "curation.change_annotation"
        annotator = api_as("annotator")
        bad = annotator.patch(f"/annotations/{annotation.pk}", {"expected_version": 1, "readability": 9})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "readability"
        empty_edit = annotator.patch(f"/annotations/{annotation.pk}", {"expected_version": 1, "verdict": "edit"})
        assert empty_edit.status_code == 422 and empty_edit.json()["detail"][0]["loc"] == ["body", "edited_reasoning"]
        missing = annotator.patch(f"/annotations/{annotation.pk}", {"verdict": "accept"})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"][-1] == "expected_version"
        annotation.refresh_from_db()
        assert annotation.version == 1


# ----- ingest


def ingest_record(i, **fields):
    return {"prompt": f"What is {i} + 1?", "completion": solved(str(i + 1), f"{i} plus one is {i + 1}."),
            "rewards": {"accuracy": 1.0}, "step": 0, "sample_index": i, **fields}


class TestIngest:
    def upload(self, api, path, **fields):
        with open(path, "rb") as f:
            return api.client.post("/api/rollouts/ingest", {"file": f, "dataset": "gsm-mini", **fields},
                                   headers=api.headers)

    @pytest.mark.django_db(transaction=True)
    def test_a_good_file_lands_through_a_job_on_a_worker(self, celery_worker, api_as, dataset, tmp_path):
        from pathlib import Path

        from apps.rollouts.models import Rollout

        path = write_jsonl(tmp_path / "rollouts.jsonl", [ingest_record(i) for i in range(4)])
        admin = api_as("admin")
        response = self.upload(admin, path, model_name="other-trainer")
        assert response.status_code == 202, response.content
        queued = response.json()
        assert (queued["kind"], queued["params"]["format"], queued["created_by"]) == ("ingest_rollouts", "jsonl",
                                                                                       "admin_user")
        job = wait_for_job(Job.objects.get(pk=queued["id"]))
        followed = admin.get(f"/jobs/{job.pk}").json()
        assert followed["status"] == "succeeded", followed["error"]
        assert (followed["result"]["landed"], followed["result"]["duplicates"]) == (4, 0)
        assert Rollout.objects.filter(job=job).count() == 4
        assert AuditEvent.objects.get(action="job.launch").via == "api"
        assert not Path(job.params["path"]).parent.exists()  # the upload went with its job

    @pytest.mark.django_db(transaction=True)
    def test_one_bad_line_lands_nothing_and_is_named(self, celery_worker, api_as, dataset, tmp_path):
        from apps.rollouts.models import Rollout

        records = [ingest_record(i) for i in range(3)] + [{"prompt": "no completion"}]
        path = write_jsonl(tmp_path / "rollouts.jsonl", records)
        admin = api_as("admin")
        failed = wait_for_job(Job.objects.get(pk=self.upload(admin, path, format="jsonl").json()["id"]))
        body = admin.get(f"/jobs/{failed.pk}").json()
        assert body["status"] == "failed" and "nothing was ingested" in body["error"]
        assert "line 4: field 'completion'" in body["error"]
        assert Rollout.objects.count() == 0
        partial_id = self.upload(admin, path, format="jsonl", partial="true").json()["id"]
        partial = wait_for_job(Job.objects.get(pk=partial_id))
        result = admin.get(f"/jobs/{partial.pk}").json()["result"]
        assert result["landed"] == 3 and list(result["rejected"]) == ["line 4"]

    def test_ingest_needs_the_permission_and_a_known_dataset(self, api_as, dataset, tmp_path):
        path = write_jsonl(tmp_path / "rollouts.jsonl", [ingest_record(0)])
        refused = self.upload(api_as("reviewer"), path)
        assert refused.status_code == 403 and refused.json()["permission"] == "rollouts.add_rollout"
        with open(path, "rb") as f:
            unknown = api_as("admin").client.post("/api/rollouts/ingest", {"file": f, "dataset": "nope"},
                                                  headers=api_as("admin").headers)
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["form", "dataset"]

    def test_an_upload_over_the_limit_is_a_413(self, api_as, dataset, tmp_path, settings):
        settings.MAX_UPLOAD_BYTES = 1000
        path = write_jsonl(tmp_path / "rollouts.jsonl", [ingest_record(i) for i in range(40)])
        response = self.upload(api_as("admin"), path)
        assert response.status_code == 413 and "limit" in response.json()["detail"]


# ----- reward recipes


class TestRecipes:
    def test_recipes_are_listed_by_name_with_their_components(self, api_as):
        from apps.rollouts.models import RewardRecipe

        RewardRecipe.save_spec("r1-chat-math", {"components": [{"name": "math_accuracy", "weight": 2.0}]})
        viewer = api_as("viewer")
        listing = viewer.get("/recipes", {"name": "r1-chat-math"})
        assert listing.status_code == 200, listing.content
        newest, older = listing.json()["items"]
        assert (newest["version"], newest["latest"], older["latest"]) == (older["version"] + 1, True, False)
        assert newest["components"] == [{"name": "math_accuracy", "weight": 2.0, "params": {}, "domains": []}]
        assert [c["name"] for c in older["components"]] == ["math_accuracy", "think_format"]
        every = {r["name"] for r in viewer.get("/recipes").json()["items"] if r["latest"]}
        assert {"r1-zero-math", "r1-chat-math", "r1-reasoning-math", "r1-zero-code"} <= every


# ----- hostile input: a clear 4xx, never a 500


class TestBadInput:
    def test_malformed_json_is_a_400(self, api_as):
        admin = api_as("admin")
        response = admin.client.post("/api/datasets", "{not json", content_type="application/json",
                                     headers=admin.headers)
        assert response.status_code == 400 and response.json()["detail"]

    @pytest.mark.parametrize("body", [
        '{"kind": "import_prompts", "params": {"path": "a\\u0000b"}}',
        '{"kind": "bulk_accept", "params": {"filters": {"\\u0000": 1}, "dataset": "x"}}',
        '{"kind": "import_prompts", "params": {"path": "\\ud800"}}',
        '{"kind": "import_prompts", "label": "\\ud800"}',
    ])
    def test_text_the_database_cannot_store_is_a_422(self, api_as, body):
        admin = api_as("admin")
        response = admin.client.post("/api/jobs", body, content_type="application/json", headers=admin.headers)
        assert response.status_code == 422
        loc = response.json()["detail"][0]["loc"]
        assert loc[:2] == ["body", "params"] or loc == ["body", "label"]
        assert Job.objects.count() == 0

    @pytest.mark.parametrize("path, status", [
        ("/datasets/a%00b", 422),
        ("/versions/99999999999999999999999", 404),
        ("/jobs/-1", 404),
        ("/prompts?q=a%00b", 422),
        ("/rollouts?job=99999999999999999999999", 422),
        ("/rollouts?q=%00", 422),
        ("/annotations?after=9999999999999999999999999", 200),
    ])
    def test_nul_characters_and_huge_numbers(self, api_as, path, status):
        assert api_as("viewer").get(path).status_code == status


# ----- scoring completions


def score_items():
    """A right and a wrong answer to the same question, and one without the format."""
    question = "Natalia sold clips to 48 friends in April and half as many in May. How many in all?"
    return [{"completion": solved(), "reference": "72", "prompt": question},
            {"completion": solved("71"), "reference": "72", "prompt": question},
            {"completion": "72", "reference": "72"}]


class TestScore:
    def test_small_batches_are_scored_in_the_request(self, api_as):
        response = api_as("admin").post("/score", {"recipe": "r1-zero-math", "items": score_items()})
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["recipe"], body["version"]) == ("r1-zero-math", 1)
        right, wrong, unformatted = body["items"]
        assert (right["total_reward"], right["is_correct"], right["format_ok"]) == (2.0, True, True)
        assert right["error"] is None
        assert (wrong["total_reward"], wrong["is_correct"], wrong["format_ok"]) == (1.0, False, True)
        assert unformatted["format_ok"] is False
        assert set(right["rewards"]) == {"math_accuracy", "format"}
        assert (right["rewards"]["math_accuracy"]["value"], right["rewards"]["math_accuracy"]["weight"]) == (1.0, 1.0)
        assert wrong["rewards"]["math_accuracy"]["value"] == 0.0 and wrong["rewards"]["math_accuracy"]["details"]
        assert Job.objects.count() == 0

    def test_a_recipe_version_is_chosen_by_number(self, api_as):
        from apps.rollouts.models import RewardRecipe

        RewardRecipe.save_spec("r1-zero-math", {"components": [{"name": "math_accuracy", "weight": 3.0}]})
        admin = api_as("admin")
        newest = admin.post("/score", {"recipe": "r1-zero-math", "items": score_items()[:1]}).json()
        assert (newest["version"], newest["items"][0]["total_reward"]) == (2, 3.0)
        first = admin.post("/score", {"recipe": "r1-zero-math", "version": 1, "items": score_items()[:1]}).json()
        assert (first["version"], first["items"][0]["total_reward"]) == (1, 2.0)

    @pytest.mark.parametrize("body, loc, message", [
        ({"recipe": "no-such-recipe", "items": [{"completion": "x"}]}, ["body", "recipe"], "r1-zero-math"),
        ({"recipe": "r1-zero-math", "version": 99, "items": [{"completion": "x"}]}, ["body", "version"], "99"),
        ({"recipe": "r1-zero-math", "items": [{"completion": "x"}, {"reference": "72"}]},
         ["body", "items", 1, "completion"], "required"),
        ({"recipe": "r1-zero-math", "items": [{"completion": "x" * 262_145}]}, ["body", "items", 0, "completion"],
         "262144"),
        ({"recipe": "r1-zero-math", "items": [{"completion": "x", "tests": "print(1)"}]},
         ["body", "items", 0, "tests"], ""),
        ({"recipe": "r1-zero-math", "items": []}, ["body", "items"], "at least 1"),
        ({"recipe": "r1-zero-math", "items": [{"completion": ""}] * 20_001}, ["body", "items"], "at most 20000"),
    ])
    def test_bad_input_is_a_422_naming_the_item_and_field(self, api_as, body, loc, message):
        response = api_as("admin").post("/score", body)
        assert response.status_code == 422, response.content[:500]
        error = response.json()["detail"][0]
        assert error["loc"] == loc and message in error["msg"]
        assert Job.objects.count() == 0

    def test_scoring_needs_the_permission_and_a_body_within_the_limit(self, api_as, settings):
        refused = api_as("reviewer").post("/score", {"recipe": "r1-zero-math", "items": score_items()})
        assert refused.status_code == 403 and refused.json()["permission"] == "rollouts.add_rollout"
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
        huge = api_as("admin").post("/score", {"recipe": "r1-zero-math", "items": [{"completion": "x" * 200_000}] * 6})
        assert huge.status_code == 413 and "R1_MAX_REQUEST_MB" in huge.json()["detail"]

    def test_a_large_batch_is_a_job_whose_scores_match_the_requests(self, api_as, settings):
        from pathlib import Path

        from apps.jobs.runner import execute

        admin, items = api_as("admin"), score_items()
        settings.SCORE_SYNC_MAX = 2
        queued = admin.post("/score", {"recipe": "r1-zero-math", "items": items})
        assert queued.status_code == 202, queued.content
        job = queued.json()
        assert (job["kind"], job["status"], job["created_by"]) == ("score_completions", "queued", "admin_user")
        upload = Path(job["params"]["path"])
        assert upload.is_file() and upload.stat().st_mode & 0o077 == 0  # private, as every upload
        assert admin.get(f"/score/{job['id']}").status_code == 409  # not scored yet
        assert execute(job["id"], worker="test") == Job.Status.SUCCEEDED
        assert not upload.parent.exists()  # the upload went with its job
        finished = admin.get(f"/jobs/{job['id']}").json()
        assert (finished["result"]["items"], finished["result"]["correct"]) == (3, 1)
        from_job = admin.get(f"/score/{job['id']}")
        assert from_job.status_code == 200, from_job.content
        settings.SCORE_SYNC_MAX = 64
        in_request = admin.post("/score", {"recipe": "r1-zero-math", "items": items})
        assert in_request.status_code == 200
        assert from_job.json() == in_request.json()
        assert api_as("viewer").get(f"/score/{job['id']}").status_code == 200
        assert admin.get(f"/score/{finished['id'] + 1000}").status_code == 404

    def test_the_job_takes_only_an_upload(self, api_as, tmp_path):
        from apps.rollouts.models import RewardRecipe

        path = write_jsonl(tmp_path / "batch.jsonl", score_items())
        response = api_as("admin").post("/jobs", {"kind": "score_completions", "params": {
            "recipe": RewardRecipe.latest("r1-zero-math").pk, "path": str(path)}})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "params", "path"]
