from django.contrib import admin
from django.urls import include, path

from apps.core import views as core
from apps.datasets import views as datasets
from apps.jobs import views as jobs
from apps.rollouts import judge_views
from apps.rollouts import views as rollouts
from apps.training import views as training
from r1studio import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", core.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("datasets/", datasets.dataset_list, name="dataset_list"),
    path("datasets/new", datasets.dataset_create, name="dataset_create"),
    path("datasets/<slug:name>/", datasets.dataset_detail, name="dataset_detail"),
    path("datasets/<slug:name>/import", datasets.dataset_import, name="dataset_import"),
    path("datasets/<slug:name>/mark", datasets.dataset_mark_prompts, name="dataset_mark_prompts"),
    path("jobs/", jobs.job_list, name="job_list"),
    path("jobs/new/<slug:kind>/", jobs.job_new, name="job_new"),
    path("jobs/new/<slug:kind>/preview", jobs.job_preview, name="job_preview"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel", jobs.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/retry", jobs.job_retry, name="job_retry"),
    path("jobs/<int:pk>/dashboard", training.job_dashboard, name="job_dashboard"),
    path("jobs/<int:pk>/dashboard.json", training.job_dashboard_data, name="job_dashboard_data"),
    path("jobs/<int:pk>/dashboard.csv", training.job_dashboard_csv, name="job_dashboard_csv"),
    path("jobs/<int:pk>/health", training.job_health, name="job_health"),
    path("models/", training.model_list, name="model_list"),
    path("models/<int:pk>/pipeline", training.pipeline, name="pipeline"),
    path("evaluations/", training.evaluation_list, name="evaluation_list"),
    path("evaluations/compare", training.evaluation_compare, name="evaluation_compare"),
    path("rollouts/", rollouts.rollout_list, name="rollout_list"),
    path("rollouts/count", rollouts.rollout_count, name="rollout_count"),
    path("rollouts/diff", rollouts.rollout_diff, name="rollout_diff"),
    path("rollouts/<int:pk>/", rollouts.rollout_detail, name="rollout_detail"),
    path("rollouts/<int:pk>/raw", rollouts.rollout_raw, name="rollout_raw"),
    path("rollouts/<int:pk>/group", rollouts.rollout_group, name="rollout_group"),
    path("rollouts/ingest", rollouts.rollout_ingest, name="rollout_ingest"),
    path("rollouts/judge-prompts", judge_views.judge_prompt_list, name="judge_prompt_list"),
    path("", include("apps.curation.urls")),
    path("", include("apps.decontam.urls")),
    path("", include("apps.dedup.urls")),
    path("audit/", core.audit_log, name="audit_log"),
    path("api/", include("apps.api.urls")),
    path("", include("apps.datasets.urls")),
]
