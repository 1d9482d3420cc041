from django.urls import path

from apps.api import views
from apps.api.main import api


def _token_authenticated(patterns):
    """ninja's views check the bearer token themselves (and the schema and docs are public): the site's
    login redirect must not apply to them, or a client without a session cookie would get a login page."""
    for pattern in patterns:
        pattern.callback.login_required = False
    return patterns


_api_patterns, _app_name, _namespace = api.urls

urlpatterns = [
    path("tokens", views.token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke", views.token_revoke, name="api_token_revoke"),
    path("docs/assets/<str:name>", views.docs_asset, name="api_docs_asset"),
    path("", (_token_authenticated(_api_patterns), _app_name, _namespace)),
]
