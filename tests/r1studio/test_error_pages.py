"""Error pages in the site's style with its navigation (404, 403, 500), and the favicon every page links."""

import pytest
from django.contrib.staticfiles import finders
from django.template import loader
from django.test import override_settings
from django.urls import path, reverse

from r1studio.urls import urlpatterns as site_patterns

SECTIONS = ["Datasets", "Rollouts", "Bulk actions", "Review", "Jobs", "Models", "Evaluations"]


def boom(request):
    raise RuntimeError("a bug in a view")


urlpatterns = [path("boom/", boom), *site_patterns]  # the site, plus a view that fails


def has_navigation(html: str) -> bool:
    return "<nav>" in html and all(f">{section}</a>" in html for section in SECTIONS)


@pytest.mark.django_db
def test_a_missing_page_is_a_404_in_the_sites_style_with_its_navigation(admin_client):
    response = admin_client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert has_navigation(html) and ">Audit</a>" in html  # the admin's own sections, as on every page
    assert "<h1>Page not found</h1>" in html and "<code>/no/such/page/</code>" in html
    assert "/static/css/r1studio.css" in html
    assert admin_client.get(reverse("job_detail", args=[999999])).status_code == 404  # get_object_or_404 too


@pytest.mark.django_db
def test_a_refused_page_is_a_403_in_the_sites_style(client, users):
    client.force_login(users["viewer"])
    response = client.get(reverse("audit_log"))  # admins only
    assert response.status_code == 403
    html = response.content.decode()
    assert has_navigation(html) and "<h1>Not allowed</h1>" in html and "viewer_user" in html


def test_the_500_page_renders_without_a_request_a_context_or_the_database():
    """As Django's server_error renders it: template.render() with nothing. This test may not touch the
    database (no django_db mark), so a 500 page that queried would fail it."""
    html = loader.get_template("500.html").render()
    assert has_navigation(html) and ">Audit</a>" not in html  # no user to ask about permissions
    assert "<h1>Something went wrong</h1>" in html and "/static/css/r1studio.css" in html


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_failing_view_answers_the_500_page(admin_client):
    admin_client.raise_request_exception = False
    response = admin_client.get("/boom/")
    assert response.status_code == 500
    html = response.content.decode()
    assert has_navigation(html) and "<h1>Something went wrong</h1>" in html and "a bug in a view" not in html


@pytest.mark.django_db
def test_every_page_links_the_favicon_and_it_exists(admin_client):
    html = admin_client.get(reverse("home")).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    icon = finders.find("favicon.svg")
    assert icon and open(icon).read().startswith("<svg")  # served over HTTP: tests/r1studio/test_page_layout.py
