"""What an ingest refuses: a file it cannot read, records that do not validate."""

from apps.datasets.importing import ImportFileError, ImportValidationError


class IngestFileError(ImportFileError):
    """The file cannot be read at all (not UTF-8, not Parquet, empty, ...); nothing was ingested."""


class IngestValidationError(ImportValidationError):
    verb = "ingested"
