"""A signed-in user in no group sees, on every page, only that they have no role yet and whom to ask;
a user whose only permission is not a product view_* permission sees no data page either.

The URL conf is enumerated, so a page added later cannot slip through."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

OPEN = ("accounts/", "static/", "healthz", "admin/", "api/")
ARGUMENTS = {"int": "1", "slug": "some-name", "str": "x", "path": "x"}


def every_url(resolver=None, prefix=""):
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from every_url(entry, pattern)
        elif isinstance(entry, URLPattern):
            yield pattern


def concrete(pattern: str) -> str:
    """A URL matching the pattern: each <converter:name> filled with a value of its kind."""
    import re

    return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: ARGUMENTS[m.group(1) or "str"], pattern).lstrip("^").rstrip("$")


CLOSED = sorted({concrete(p) for p in every_url() if not p.startswith(OPEN) and "(?P" not in p})


def test_the_enumeration_found_the_pages():
    assert len(CLOSED) > 40 and "/" in CLOSED and "/rollouts/" in CLOSED and "/review/" in CLOSED


@pytest.mark.parametrize("url", CLOSED)
def test_a_user_in_no_group_sees_no_data(client, users, url):
    client.force_login(users["stranger"])  # in no group
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 403, (url, response.status_code)
        text = response.content.decode()
        assert "You have no role yet" in text
        assert "Ask an administrator" in text and "<strong>admin_user</strong>" in text  # whom to ask
        assert "<nav>" not in text


@pytest.mark.parametrize("url", CLOSED)
def test_every_page_asks_for_its_view_permission(client, users, url):
    """A permission outside the product (here: seeing user accounts) passes the no-role check but
    must open no data page: each asks for the view_* permissions the API asks for."""
    user = users["stranger"]
    user.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(user)
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code in (403, 405), (url, method, response.status_code)  # 405: POST-only or GET-only
    assert {client.get(url).status_code, client.post(url).status_code} != {405}, url


def test_a_viewer_still_sees_the_pages(client, users):
    client.force_login(users["viewer"])
    assert client.get("/rollouts/").status_code == 200
