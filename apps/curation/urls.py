from django.urls import path

from apps.curation import views

urlpatterns = [
    path("", views.queue_list, name="queue_list"),
    path("new", views.queue_create, name="queue_create"),
    path("<int:pk>/", views.review_next, name="queue_review"),
    path("<int:pk>/overview", views.queue_detail, name="queue_detail"),
    path("<int:pk>/freeze", views.queue_freeze, name="queue_freeze"),
    path("<int:pk>/adjudicate", views.adjudicate_list, name="queue_adjudicate"),
    path("<int:pk>/adjudicate/<int:position>/", views.adjudicate_item, name="queue_adjudicate_item"),
    path("<int:pk>/<int:position>/", views.review_item, name="queue_review_item"),
    path("<int:pk>/<int:position>/save", views.review_save, name="queue_review_save"),
]
