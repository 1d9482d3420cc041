"""NUL bytes, broken multipart bodies and the Content-Security-Policy header, on real requests."""

import pytest

from apps.core.middleware import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/rollouts/?q=a%00b", "/rollouts/?model%00=1", "/datasets/?page=%00"])
def test_a_nul_byte_in_a_filter_is_a_400_naming_the_field(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert b"contains a NUL byte" in response.content


def test_a_nul_byte_in_a_form_is_a_400_naming_the_field(admin_client):
    response = admin_client.post("/datasets/new", {"name": "bad\x00name"})
    assert response.status_code == 400
    assert response.content == b"The field 'name' contains a NUL byte"


def test_a_multipart_request_without_a_boundary_is_a_400(admin_client):
    response = admin_client.generic("POST", "/datasets/new", b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert b"The form data cannot be read" in response.content


@pytest.mark.parametrize("url", ["/", "/rollouts/", "/accounts/login/", "/api/openapi.json", "/no-such-page"])
def test_every_response_carries_the_content_security_policy(client, admin_client, url):
    for who in (client, admin_client):
        response = who.get(url)
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name, allowed", [("R1_KEY_OPENAI", True), (None, True), ("DATABASE_URL", False),
                                           ("SECRET_KEY", False), ("R1_KEY_", False), (["R1_KEY_X"], False)])
def test_a_model_may_name_only_prefixed_key_variables(name, allowed, monkeypatch):
    from django.core.exceptions import ValidationError

    from apps.datasets.models import ModelVersion
    from workers.generation.base import BackendUnavailable
    from workers.generation.factory import make_backend

    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    config = {"base_url": "http://127.0.0.1:9/v1", **({"api_key_env": name} if name is not None else {})}
    version = ModelVersion(name="api", backend="openai", uri="m", config=config)
    if allowed:
        version.clean()
        make_backend("openai", "m", config)
    else:
        with pytest.raises(ValidationError, match="api_key_env must name a variable starting with R1_KEY_"):
            version.clean()
        with pytest.raises(BackendUnavailable, match="R1_KEY_"):  # a row saved around the form is refused too
            make_backend("openai", "m", config)
