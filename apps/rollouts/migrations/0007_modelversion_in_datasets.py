"""The foreign key follows ModelVersion to the datasets app: the same table, so state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('datasets', '0006_modelversion'),
        ('rollouts', '0006_completion_search'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.AlterField(
            model_name='rollout',
            name='model_version',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='rollouts', to='datasets.modelversion'),
        )]),
    ]
