from django.contrib import admin
from django.urls import include, path

from apps.core import views as core
from apps.curation import views as curation
from apps.datasets import views as datasets
from apps.jobs import views as jobs
from apps.rollouts import views as rollouts
from apps.training import views as training

urlpatterns = [
    path("", core.home, name="home"),
    path("healthz", core.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("datasets/", datasets.dataset_list, name="dataset_list"),
    path("datasets/new", datasets.dataset_create, name="dataset_create"),
    path("datasets/<slug:name>/", datasets.dataset_detail, name="dataset_detail"),
    path("datasets/<slug:name>/import", datasets.dataset_import, name="dataset_import"),
    path("jobs/", jobs.job_list, name="job_list"),
    path("jobs/new/<slug:kind>/", jobs.job_new, name="job_new"),
    path("jobs/new/<slug:kind>/preview", jobs.job_preview, name="job_preview"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel", jobs.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/retry", jobs.job_retry, name="job_retry"),
    path("models/", training.model_list, name="model_list"),
    path("models/<int:pk>/pipeline", training.pipeline, name="pipeline"),
    path("rollouts/", rollouts.rollout_list, name="rollout_list"),
    path("review/", curation.queue_list, name="queue_list"),
]
