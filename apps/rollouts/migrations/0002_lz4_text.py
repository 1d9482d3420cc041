from django.db import migrations

TEXT_COLUMNS = ["prompt_text", "completion", "reasoning", "answer", "rewards"]


def use_lz4(apps, schema_editor):
    """Compress the long text of rollouts with lz4 instead of pglz (Postgres 14+ built with lz4).

    Compression was about a sixth of Postgres's time per rollout written in
    benchmarks/ingest.py; lz4 cut that by about a quarter for about 5% more disk.
    Readers decompress either, so rows written before stay readable.
    """
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
        )
        if cursor.fetchone() is None:
            return
        for column in TEXT_COLUMNS:
            cursor.execute(f'ALTER TABLE rollouts_rollout ALTER COLUMN "{column}" SET COMPRESSION lz4')


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0001_initial")]
    operations = [migrations.RunPython(use_lz4, migrations.RunPython.noop)]
