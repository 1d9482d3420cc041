from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models.functions import Left

from apps.core.search import AddIndexOnPostgres


class Migration(migrations.Migration):
    dependencies = [("datasets", "0002_initial")]

    operations = [
        AddIndexOnPostgres(
            model_name="prompt",
            index=GinIndex(SearchVector(Left("question", 100000), config="english"), name="prompt_question_search"),
        ),
    ]
