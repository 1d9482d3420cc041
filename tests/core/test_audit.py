"""The audit log: consequential actions leave an event; only admins read the log."""

from django.urls import reverse

from apps.core.models import AuditEvent
from apps.jobs import launching
from tests.conftest import write_jsonl


def test_launching_and_cancelling_a_job_are_logged_with_who_and_how(client, users, dataset, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "1+1?", "answer": "2"}])
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, user=users["admin"],
                           enqueue=False)
    client.force_login(users["admin"])
    client.post(reverse("job_cancel", args=[job.pk]))
    events = list(AuditEvent.objects.order_by("id").values_list("actor__username", "action", "target_id", "via"))
    assert events == [("admin_user", "job.launch", str(job.pk), "web"),
                      ("admin_user", "job.cancel", str(job.pk), "web")]
    assert AuditEvent.objects.get(action="job.launch").details == {"kind": "import_prompts"}


def test_cancel_and_retry_are_each_logged_once_from_the_page_and_the_api(client, users, dataset, tmp_path):
    from apps.api.tokens import issue_token

    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "1+1?", "answer": "2"}])
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False, via="cli")
    _, token = issue_token(users["admin"], "audit test")
    client.post(f"/api/jobs/{job.pk}/cancel", headers={"Authorization": f"Bearer {token}"})
    client.force_login(users["admin"])
    client.post(reverse("job_retry", args=[job.pk]))
    client.post(reverse("job_retry", args=[job.pk]))  # queued again already: nothing to retry, nothing logged
    events = list(AuditEvent.objects.filter(action__startswith="job.").order_by("id").values_list("action", "via"))
    assert events == [("job.launch", "cli"), ("job.cancel", "api"), ("job.retry", "web")]


def test_only_admins_see_the_log_and_it_filters_by_action_and_person(client, users, dataset, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "1+1?"}])
    launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, user=users["reviewer"],
                     enqueue=False)
    launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, user=users["admin"], enqueue=False,
                     via="cli")
    client.force_login(users["reviewer"])
    assert client.get(reverse("audit_log")).status_code == 403
    client.force_login(users["admin"])
    page = client.get(reverse("audit_log"), {"actor": "reviewer_user"}).content.decode()
    assert "reviewer_user" in page and "admin_user</td>" not in page
    assert client.get(reverse("audit_log"), {"action": "version."}).content.decode().count("<code>job.launch") == 0
    assert client.get(reverse("audit_log"), {"after": "nonsense"}).status_code == 400


def test_the_admin_site_shows_the_log_read_only(client, users):
    users["admin"].is_staff = True
    users["admin"].save()
    client.force_login(users["admin"])
    assert client.get("/admin/core/auditevent/").status_code == 200
    assert client.get("/admin/core/auditevent/add/").status_code == 403


def test_details_read_as_key_value_lists_not_python_dicts(client, users):
    from apps.core.audit import record

    record(users["admin"], "queue.freeze", None, items=3, merged={"identical": 2, "ids": [4, 5]}, note="<b>hi</b>",
           model_version=None)
    client.force_login(users["admin"])
    page = client.get(reverse("audit_log")).content.decode()
    details = page.split('<td class="text details">')[1].split("</td>")[0]
    assert details.startswith('<dl class="kv-list">')
    assert "<dt>items</dt><dd>3</dd>" in details and "<dt>note</dt><dd>&lt;b&gt;hi&lt;/b&gt;</dd>" in details
    assert "<dt>model_version</dt><dd>—</dd>" in details
    assert '<dt>merged</dt><dd><dl class="kv-list">' in details and "<dt>ids</dt><dd>4, 5</dd>" in details
    assert "{" not in details and "&#x27;" not in details  # no Python repr
