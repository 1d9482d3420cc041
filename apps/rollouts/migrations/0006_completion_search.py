from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models.functions import Left

from apps.core.search import AddIndexOnPostgres


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0005_shape_flags")]

    operations = [
        AddIndexOnPostgres(
            model_name="rollout",
            index=GinIndex(SearchVector(Left("completion", 100000), config="english"), name="rollout_completion_search"),
        ),
    ]
