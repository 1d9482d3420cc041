"""The error responses each kind of operation documents (all share ErrorOut's shape; 403 names the permission)."""

from apps.api.schemas import ErrorOut, PermissionErrorOut

READ = {401: ErrorOut, 403: PermissionErrorOut, 422: ErrorOut}
READ_ONE = {**READ, 404: ErrorOut}
WRITE = READ_ONE
