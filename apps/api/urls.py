urlpatterns = []  # apps.api: the REST API (filled in by the API work)
