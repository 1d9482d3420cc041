from django.db import migrations, models

from workers.rewards.shape import shape_flags

BATCH = 2_000


def fill_shape_flags(apps, schema_editor):
    """Existing rollouts get their flags from the text they already store."""
    Rollout = apps.get_model("rollouts", "Rollout")
    rows = Rollout.objects.only("completion", "reasoning", "answer").order_by("pk")
    changed = []
    for rollout in rows.iterator(chunk_size=BATCH):
        rollout.shape_flags = shape_flags(rollout.completion, rollout.reasoning, rollout.answer)
        if rollout.shape_flags:
            changed.append(rollout)
        if len(changed) >= BATCH:
            Rollout.objects.bulk_update(changed, ["shape_flags"])
            changed = []
    Rollout.objects.bulk_update(changed, ["shape_flags"])


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0004_prompt_template")]

    operations = [
        migrations.AddField(
            model_name="rollout",
            name="shape_flags",
            field=models.PositiveSmallIntegerField(
                default=0,
                help_text="Bits of workers.rewards.shape: short reasoning, repeated text, outside the template",
            ),
        ),
        migrations.RunPython(fill_shape_flags, migrations.RunPython.noop),
    ]
