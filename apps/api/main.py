"""The REST API: one NinjaAPI with bearer-token auth, mounted at /api/ (OpenAPI at /api/openapi.json)."""

from ninja import NinjaAPI

from apps.api import errors
from apps.api.auth import TokenAuth
from apps.api.docs import LocalSwagger
from apps.api.routes import (
    annotations,
    datasets,
    decontam,
    dedup,
    ingest,
    jobs,
    prompts,
    recipes,
    rollouts,
    score,
    versions,
)

DESCRIPTION = """\
R1 Studio's data: datasets, frozen versions and their export, prompts, rollouts, reward recipes and scoring,
jobs, annotations and de-duplication runs.

**Authentication**: every operation needs `Authorization: Bearer r1_<prefix>_<secret>`. Create a token at
[/api/tokens](/api/tokens) (it is shown once) or with `r1studio create_api_token <username> <name>`.
Missing, malformed or revoked tokens get a 401.

**Permissions** come from the token owner's group (viewer < annotator < reviewer < admin); a 403 names the
missing permission in `permission`.

**Errors** are JSON `{"detail": ...}`; a 422's detail is a list of `{"loc", "msg", "type"}` naming each bad field.

**Lists** are keyset pages: `{"items": [...], "next": cursor, "total": n, "total_is_estimate": bool}`; pass
`next` as `?after=` for the next page (null on the last page). `total` counts the whole list, every page, the
way the rollout browser counts: exact when Postgres can count it within a quarter of a second, otherwise
Postgres' planner estimate, and then `total_is_estimate` is true (an unfiltered rollout list is always
estimated: the table may hold hundreds of millions of rows).
"""


class StudioAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation):
        return operation.view_func.__name__  # short, stable ids for generated clients (each view name is unique)


api = StudioAPI(
    title="R1 Studio API",
    version="1",
    description=DESCRIPTION,
    auth=TokenAuth(),
    docs=LocalSwagger(),
    urls_namespace="api",
)
errors.install(api)
for module in (datasets, versions, prompts, rollouts, recipes, score, ingest, jobs, annotations, decontam, dedup):
    api.add_router("", module.router)
