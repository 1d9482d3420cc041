"""Review queues, and turning rollouts into examples in bulk (the two ways rollouts become training data)."""

from django.urls import path

from apps.curation import bulk_views, views

urlpatterns = [
    path("review/", views.queue_list, name="queue_list"),
    path("review/new", views.queue_create, name="queue_create"),
    path("review/<int:pk>/", views.review_next, name="queue_review"),
    path("review/<int:pk>/overview", views.queue_detail, name="queue_detail"),
    path("review/<int:pk>/freeze", views.queue_freeze, name="queue_freeze"),
    path("review/<int:pk>/adjudicate", views.adjudicate_list, name="queue_adjudicate"),
    path("review/<int:pk>/adjudicate/<int:position>/", views.adjudicate_item, name="queue_adjudicate_item"),
    path("review/<int:pk>/<int:position>/", views.review_item, name="queue_review_item"),
    path("review/<int:pk>/<int:position>/save", views.review_save, name="queue_review_save"),
    path("rollouts/bulk", bulk_views.rollout_bulk, name="rollout_bulk"),
    path("bulk/", bulk_views.bulk_list, name="bulk_list"),
    path("bulk/<int:pk>/", bulk_views.bulk_detail, name="bulk_detail"),
    path("bulk/<int:pk>/undo", bulk_views.bulk_undo, name="bulk_undo"),
]
