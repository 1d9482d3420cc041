from django.urls import path

from apps.decontam import views

urlpatterns = [
    path("decontam/", views.decontam_list, name="decontam_list"),
    path("decontam/new", views.decontam_new, name="decontam_new"),
    path("decontam/<int:pk>/", views.decontam_check, name="decontam_check"),
    path("decontam/<int:pk>/decide", views.check_decide, name="decontam_decide"),
    path("decontam/<int:pk>/write", views.check_write, name="decontam_write"),
    path("decontam/matches/<int:pk>/", views.match_detail, name="decontam_match"),
    path("decontam/matches/<int:pk>/decide", views.match_decide, name="decontam_match_decide"),
]
