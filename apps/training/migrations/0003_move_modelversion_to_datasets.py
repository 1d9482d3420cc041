"""ModelVersion now lives in the datasets app (its 0006): the training app forgets it, state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('datasets', '0006_modelversion'),
        ('rollouts', '0007_modelversion_in_datasets'),
        ('training', '0002_evaluation'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='evaluation',
                name='model_version',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='evaluations', to='datasets.modelversion'),
            ),
            migrations.DeleteModel(
                name='ModelVersion',
            ),
        ]),
    ]
