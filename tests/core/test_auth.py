"""Every page needs a login; each group can do what its name implies and no more."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.jobs.models import Job

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "password_reset", "password_reset_done", "password_reset_confirm", "password_reset_complete",
          "healthz", "api_docs_asset"}


def named_routes(resolver=None, prefix=""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in ("admin", "api"):  # the API answers 401 without a token: tests/test_api.py
                continue
            yield from named_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry.name, prefix + str(entry.pattern)


def sample_url(name, pattern):
    kwargs = {}
    if "<slug:name>" in pattern:
        kwargs["name"] = "gsm-mini"
    for number in re.findall(r"<int:(\w+)>", pattern):
        kwargs[number] = 1
    if "<slug:kind>" in pattern:
        kwargs["kind"] = "grpo"
    if "<uidb64>" in pattern:
        kwargs = {"uidb64": "x", "token": "y"}
    return reverse(name, kwargs=kwargs)


def test_every_page_needs_login(client, dataset):
    Job.objects.create(pk=1, kind="import_prompts")
    checked = 0
    for name, pattern in named_routes():
        if name in PUBLIC or name == "logout":
            continue
        for method in (client.get, client.post):
            response = method(sample_url(name, pattern))
            assert response.status_code == 302, (name, response.status_code)
            assert response.url.startswith(reverse("login")), name
            checked += 1
    assert checked >= 20
    assert client.get(reverse("admin:index")).status_code == 302


def test_the_health_check_is_public(client):
    assert client.get(reverse("healthz")).json() == {"ok": True}


@pytest.mark.parametrize(
    "role, can_import, can_create_dataset, can_cancel, can_annotate, can_freeze",
    [
        ("viewer", False, False, False, False, False),
        ("annotator", False, False, False, True, False),
        ("reviewer", False, False, False, True, True),
        ("admin", True, True, True, True, True),
        ("stranger", False, False, False, False, False),
    ],
)
def test_groups_grant_what_their_names_imply(users, role, can_import, can_create_dataset, can_cancel, can_annotate,
                                             can_freeze):
    user = users[role]
    assert user.has_perm("datasets.import_prompts") is can_import
    assert user.has_perm("datasets.add_dataset") is can_create_dataset
    assert user.has_perm("jobs.cancel_job") is can_cancel
    assert user.has_perm("curation.change_annotation") is can_annotate
    assert user.has_perm("datasets.freeze_version") is can_freeze
    assert user.has_perm("rollouts.view_rollout") is (role != "stranger")


def test_a_viewer_cannot_import_create_or_cancel(client, users, dataset):
    client.force_login(users["viewer"])
    job = Job.objects.create(kind="import_prompts")
    assert client.get(reverse("dataset_import", args=[dataset.name])).status_code == 403
    assert client.post(reverse("dataset_create"), {"name": "x"}).status_code == 403
    assert client.post(reverse("job_cancel", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == "queued"
    assert client.get(reverse("dataset_detail", args=[dataset.name])).status_code == 200


def test_repeated_failed_logins_are_throttled(client, users):
    url = reverse("login")
    for _ in range(4):
        response = client.post(url, {"username": "viewer_user", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    assert client.post(url, {"username": "viewer_user", "password": "wrong"}).status_code == 429  # the 5th
    locked = client.post(url, {"username": "viewer_user", "password": "pw-viewer_user"})
    assert locked.status_code == 429  # even the right password, until the cool-off ends
    assert b"Too many failed logins" in locked.content
    # Another account from the same address is not locked out by these failures.
    assert client.post(url, {"username": "admin_user", "password": "pw-admin_user"}).status_code == 302


def test_one_address_trying_many_usernames_is_locked_out(client, users, settings):
    """Password spraying: few tries per account, many accounts, one address."""
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    url = reverse("login")
    for i in range(7):  # 7 failures over 7 names: no single account comes near its limit of 5
        assert client.post(url, {"username": f"guess{i}", "password": "wrong"}).status_code == 200
    assert client.post(url, {"username": "guess7", "password": "wrong"}).status_code == 429  # the 8th
    locked = client.post(url, {"username": "admin_user", "password": "pw-admin_user"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    other_address = client.post(url, {"username": "admin_user", "password": "pw-admin_user"}, REMOTE_ADDR="10.0.0.9")
    assert other_address.status_code == 302  # the lock is the address's, not the account's


def test_a_good_login_lands_on_home(client, users):
    response = client.post(reverse("login"), {"username": "admin_user", "password": "pw-admin_user"}, follow=True)
    assert response.status_code == 200
    assert b"Recent jobs" in response.content
