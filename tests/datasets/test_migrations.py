"""ModelVersion moved from the training app to the datasets app as a state-only move: a database
migrated on the old layout, with rows in it, keeps its table, its rows, the foreign keys that point
at them and the permissions that groups hold on them."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.datasets.models import ModelVersion
from apps.rollouts.models import Rollout
from apps.training.models import Evaluation

BEFORE_THE_MOVE = [
    ("datasets", "0005_bulkaction_example_bulk_action"),
    ("training", "0002_evaluation"),
    ("rollouts", "0006_completion_search"),
]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


@pytest.mark.django_db(transaction=True)
def test_a_database_from_before_the_move_keeps_its_model_versions():
    old = migrate(BEFORE_THE_MOVE).loader.project_state(BEFORE_THE_MOVE).apps
    content_types = old.get_model("contenttypes", "ContentType")
    assert content_types.objects.filter(app_label="training", model="modelversion").exists()
    job = old.get_model("jobs", "Job").objects.create(kind="grpo", label="train")
    base = old.get_model("training", "ModelVersion").objects.create(name="tiny-base", uri="/models/tiny")
    tuned = old.get_model("training", "ModelVersion").objects.create(
        name="tiny-grpo", uri="/models/tiny-grpo", stage="r1_zero", parent=base, produced_by=job, step=300)
    dataset = old.get_model("datasets", "Dataset").objects.create(name="gsm")
    prompt = old.get_model("datasets", "Prompt").objects.create(
        dataset=dataset, question="What is 2 + 2?", reference_answer="4", content_hash="h1")
    old.get_model("rollouts", "Rollout").objects.create(
        job=job, prompt=prompt, model_version=tuned, step=0, group=0, sample_index=0, completion="4")
    old.get_model("training", "Evaluation").objects.create(
        model_version=tuned, dataset=dataset, job=old.get_model("jobs", "Job").objects.create(kind="evaluate"),
        k=4, temperature=0.6, top_p=0.95)
    viewers = old.get_model("auth", "Group").objects.create(name="model-watchers")
    viewers.permissions.add(old.get_model("auth", "Permission").objects.get(
        content_type__app_label="training", codename="view_modelversion"))

    migrate(None)

    moved = ModelVersion.objects.get(name="tiny-grpo")
    assert (moved.parent.name, moved.produced_by_id, moved.step, moved.stage) == ("tiny-base", job.pk, 300, "r1_zero")
    assert Rollout.objects.get().model_version == moved
    assert Evaluation.objects.get().model_version == moved
    assert list(ModelVersion.objects.order_by("name").values_list("name", flat=True)) == ["tiny-base", "tiny-grpo"]
    group = Group.objects.get(name="model-watchers")
    assert [(p.content_type.app_label, p.codename) for p in group.permissions.all()] == [
        ("datasets", "view_modelversion")]
