"""ModelVersion moves here from the training app (datasets and models are what the other apps build on).

A state-only move: the table keeps its name (training_modelversion) and its rows, and the content
type is relabelled, so the permissions and the groups that hold them follow the model."""

import django.db.models.deletion
from django.db import migrations, models


def relabel(old: str, new: str):
    def run(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        if not ContentType.objects.filter(app_label=new, model="modelversion").exists():
            ContentType.objects.filter(app_label=old, model="modelversion").update(app_label=new)
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('datasets', '0005_bulkaction_example_bulk_action'),
        ('jobs', '0001_initial'),
        ('training', '0002_evaluation'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.CreateModel(
            name='ModelVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('uri', models.CharField(help_text='Local path, hub id or API model name', max_length=1000)),
                ('backend', models.CharField(default='transformers', help_text='transformers, vllm, openai', max_length=20)),
                ('stage', models.CharField(choices=[('base', 'Base model'), ('r1_zero', 'R1-Zero (GRPO on base)'), ('cold_start', 'Cold-start SFT'), ('reasoning_rl', 'Reasoning RL'), ('rejection_sft', 'Rejection sampling + SFT'), ('all_scenario_rl', 'All-scenario RL'), ('distilled', 'Distilled'), ('other', 'Other')], default='base', max_length=20)),
                ('step', models.PositiveIntegerField(blank=True, help_text='Training step of this checkpoint', null=True)),
                ('config', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='children', to='datasets.modelversion')),
                ('produced_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='model_versions', to='jobs.job')),
            ],
            options={
                'db_table': 'training_modelversion',
                'ordering': ['-id'],
            },
        )]),
        migrations.RunPython(relabel("training", "datasets"), relabel("datasets", "training")),
    ]
