from django.http import Http404


def export_version(request, pk):  # placeholder until the export lands
    raise Http404("export is not built yet")
