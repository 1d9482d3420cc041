"""Interactive API docs served entirely from this server.

ninja's own Swagger page loads swagger-ui from a CDN unless "ninja" is an installed app, and nothing outside
can be reached from where R1 Studio runs. So the page is our template, and the swagger-ui files that ship
inside the installed ninja package are served by `docs_asset`.
"""

from pathlib import Path

import ninja
from django.http import FileResponse, Http404
from django.shortcuts import render
from django.urls import reverse
from ninja.openapi.docs import DocsBase

ASSET_DIR = Path(ninja.__file__).resolve().parent / "static" / "ninja"
ASSETS = {  # file name: (what the page calls it, content type)
    "swagger-ui.css": ("css", "text/css"),
    "swagger-ui-bundle.js": ("bundle", "text/javascript"),
    "swagger-ui-init.js": ("init", "text/javascript"),
    "favicon.png": ("favicon", "image/png"),
}


class LocalSwagger(DocsBase):
    def render_page(self, request, api, **kwargs):
        settings = {"url": self.get_openapi_url(api, kwargs), "layout": "BaseLayout", "deepLinking": True,
                    "persistAuthorization": True}
        return render(request, "api/docs.html", {
            "api": api,
            "swagger_settings": settings,
            "assets": {role: reverse("api_docs_asset", args=[name]) for name, (role, _) in ASSETS.items()},
        })


def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise Http404(f"No docs asset {name!r}")
    # FileResponse streams the file and closes it when the response is done.
    response = FileResponse(open(ASSET_DIR / name, "rb"), content_type=ASSETS[name][1])  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=86400"
    return response
