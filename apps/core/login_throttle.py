"""Failed-login throttling: django-axes counts failures per username and address; this also counts
them per address across usernames, so one address trying many accounts (password spraying) is
locked out too, against a larger limit (people behind one office address mistype as well)."""

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum


class LoginThrottle(AxesDatabaseHandler):
    def get_failures(self, request, credentials=None) -> int:
        per_account = super().get_failures(request, credentials)
        per_address = AccessAttempt.objects.filter(
            ip_address=request.axes_ip_address, attempt_time__gte=get_cool_off_threshold(request),
        ).aggregate(failures=Sum("failures_since_start"))["failures"] or 0
        # On the per-account scale, so that axes' one limit locks at LOGIN_ADDRESS_FAILURE_LIMIT here.
        return max(per_account, per_address * settings.AXES_FAILURE_LIMIT // settings.LOGIN_ADDRESS_FAILURE_LIMIT)
