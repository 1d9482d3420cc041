from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import migrations, models

from apps.core.search import AddIndexOnPostgres, stored_search_vector


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0005_shape_flags")]

    operations = [
        migrations.AddField(
            model_name="rollout",
            name="search",
            field=models.GeneratedField(
                db_persist=True, expression=stored_search_vector("completion"), output_field=SearchVectorField()
            ),
        ),
        AddIndexOnPostgres(model_name="rollout", index=GinIndex(fields=["search"], name="rollout_completion_search")),
    ]
