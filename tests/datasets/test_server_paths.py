"""A job's server path from the web or the API must resolve under R1_IMPORT_ROOTS (or be an upload);
missing and forbidden paths get the same answer; the command line may name any path."""

import pytest
from django.core.exceptions import ValidationError

from apps.jobs import launching

pytestmark = pytest.mark.django_db

REFUSED = "is not a file or folder under an allowed import root"


def refusal(params: dict, via: str = "web") -> str:
    with pytest.raises(ValidationError) as exc:
        launching.launch("import_prompts", params, enqueue=False, via=via)
    return exc.value.message_dict["path"][0]


@pytest.fixture
def layout(tmp_path, settings):
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (allowed / "prompts.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    (secret / "tests.jsonl").write_text('{"question": "hidden", "answer": "42"}\n')
    (allowed / "escape.jsonl").symlink_to(secret / "tests.jsonl")
    settings.IMPORT_ROOTS = [allowed.resolve()]
    return allowed, secret


def test_a_path_under_a_root_is_accepted(dataset, layout):
    allowed, _ = layout
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(allowed / "prompts.jsonl")},
                           enqueue=False)
    assert job.params["path"] == str((allowed / "prompts.jsonl").resolve())


@pytest.mark.parametrize("where", ["outside", "symlink_out", "dot_dot", "missing", "missing_outside"])
def test_outside_the_roots_and_missing_give_the_same_answer(dataset, layout, where):
    allowed, secret = layout
    path = {
        "outside": secret / "tests.jsonl",
        "symlink_out": allowed / "escape.jsonl",  # resolved: it points outside
        "dot_dot": allowed / ".." / "secret" / "tests.jsonl",
        "missing": allowed / "nope.jsonl",
        "missing_outside": secret / "nope.jsonl",
    }[where]
    message = refusal({"dataset": dataset.pk, "path": str(path)})
    assert message == f"{path} {REFUSED}. Allowed roots: {allowed.resolve()}"
    assert "hidden" not in message and "42" not in message


def test_with_no_roots_the_feature_is_off(dataset, layout, settings):
    allowed, _ = layout
    settings.IMPORT_ROOTS = []
    message = refusal({"dataset": dataset.pk, "path": str(allowed / "prompts.jsonl")})
    assert message.endswith("Allowed roots: none (an operator sets R1_IMPORT_ROOTS)")


def test_the_command_line_may_name_any_existing_path(dataset, layout):
    _, secret = layout
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(secret / "tests.jsonl")},
                           enqueue=False, via="cli")
    assert job.params["path"] == str(secret / "tests.jsonl")
    assert "does not exist" in refusal({"dataset": dataset.pk, "path": str(secret / "nope.jsonl")}, via="cli")


def test_the_api_refuses_a_path_outside_the_roots(client, users, dataset, layout):
    from apps.api.tokens import issue_token

    _, secret = layout
    _, token = issue_token(users["admin"], "t")
    response = client.post(
        "/api/jobs", {"kind": "import_prompts", "params": {"dataset": dataset.pk, "path": str(secret / "tests.jsonl")}},
        content_type="application/json", headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422, response.content
    assert REFUSED.encode() in response.content
