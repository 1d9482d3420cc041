from django.urls import path

from apps.dedup import views

urlpatterns = [
    path("versions/<int:pk>/dedup", views.version_dedup, name="version_dedup"),
    path("dedup/<int:pk>/", views.run_detail, name="dedup_run"),
    path("dedup/<int:pk>/apply-rule", views.apply_rule, name="dedup_apply_rule"),
    path("dedup/<int:pk>/write", views.write_version, name="dedup_write"),
    path("dedup/clusters/<int:pk>/decide", views.cluster_decide, name="dedup_cluster_decide"),
    path("dedup/members/<int:pk>/decide", views.member_decide, name="dedup_member_decide"),
]
