from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.template.defaultfilters import filesizeformat


class LimitedUploadHandler(FileUploadHandler):
    """Refuse an upload over MAX_UPLOAD_BYTES before it is written to disk.

    Form fields that precede the file (the CSRF token) are still parsed, so the
    view can answer with a clear message from `request.upload_error`.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.content_length = content_length

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0
        if self.content_length and self.content_length > settings.MAX_UPLOAD_BYTES:
            self._refuse(self.content_length)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.MAX_UPLOAD_BYTES:
            self._refuse(self.received)
        return raw_data

    def file_complete(self, file_size):
        return None

    def _refuse(self, size):
        self.request.upload_error = (
            f"The upload is {filesizeformat(size)}; the limit is {filesizeformat(settings.MAX_UPLOAD_BYTES)} "
            "(MAX_UPLOAD_MB). Load larger files from the command line: "
            "r1studio import_prompts or r1studio ingest_rollouts."
        )
        raise StopUpload(connection_reset=True)
