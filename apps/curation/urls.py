from django.urls import path

from apps.curation import views

urlpatterns = [
    path("", views.queue_list, name="queue_list"),
]
