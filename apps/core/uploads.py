import os
import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.template.defaultfilters import filesizeformat
from django.utils.text import get_valid_filename


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


def save_upload(upload) -> Path:
    """Write an uploaded file to a folder of its own under UPLOAD_DIR, readable by this user only.

    Uploads hold prompts with their hidden test outputs: 0700 folders and 0600 files,
    and `discard_upload` deletes them when their job ends.
    """
    private_folder(settings.UPLOAD_DIR)
    folder = settings.UPLOAD_DIR / uuid.uuid4().hex
    folder.mkdir(mode=0o700)
    path = folder / get_valid_filename(upload.name or "upload")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


def discard_upload(path) -> bool:
    """Delete an upload's folder, if `path` is an upload (under UPLOAD_DIR); True when it deleted one."""
    if not path:
        return False
    uploads = settings.UPLOAD_DIR.resolve()
    folder = Path(path).resolve().parent
    if folder.parent != uploads:
        return False  # a server path or something else: never ours to delete
    shutil.rmtree(folder, ignore_errors=True)
    return True


def sweep_stale_uploads(max_age_s: float, keep: set[str]) -> int:
    """Delete upload folders older than `max_age_s` whose file is not in `keep` (the paths of jobs still to
    run): a file previewed and never ingested. Returns how many folders went."""
    uploads = settings.UPLOAD_DIR
    if not uploads.is_dir():
        return 0
    keep_folders = {Path(path).resolve().parent for path in keep}
    cutoff, removed = time.time() - max_age_s, 0
    for folder in uploads.iterdir():
        if folder.is_dir() and folder.resolve() not in keep_folders and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def private_folder(path: Path) -> Path:
    """Create `path` (and its parents) readable by this user only; tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
