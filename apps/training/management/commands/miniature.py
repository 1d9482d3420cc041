"""`r1studio miniature`: R1-Zero in miniature on the running worker; prints pass@1 before and after."""

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.training.miniature import TASKS, MiniatureConfig, run_miniature


class Command(BaseCommand):
    help = "SFT the tiny model on the answer format, then GRPO; held-out pass@1 before and after (needs a worker)."

    def add_arguments(self, parser):
        defaults = MiniatureConfig()
        parser.add_argument("--sft-steps", type=int, default=defaults.sft_steps)
        parser.add_argument("--grpo-steps", type=int, default=defaults.grpo_steps)
        parser.add_argument("--heldout", type=int, default=defaults.heldout)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--task", default=defaults.task, choices=sorted(TASKS),
                            help="The GRPO and held-out problems")
        parser.add_argument("--name", default=defaults.name, help="Prefix of the datasets and models it creates")

    def handle(self, *args, **opts):
        config = MiniatureConfig(sft_steps=opts["sft_steps"], grpo_steps=opts["grpo_steps"],
                                 heldout=opts["heldout"], seed=opts["seed"], name=opts["name"], task=opts["task"])
        result = run_miniature(settings.STORAGE_ROOT / "models", config, log=self.stdout.write)
        self.stdout.write(f"\nR1-Zero in miniature ({result['minutes']} min, jobs {result['jobs']}):")
        self.stdout.write("  held-out pass@1   temperature   before GRPO   after GRPO   ratio")
        for temperature, (before, after) in result["pass@1"].items():
            ratio = f"{after / before:.2f}x" if before else "-"
            self.stdout.write(f"                   {temperature:>11}   {before:>11.3f}   {after:>10.3f}   {ratio:>5}")
        self.stdout.write("  GRPO, means over blocks of steps (to step, reward, accuracy, length in tokens,"
                          " reflection-word rate):")
        for point in result["curves"]:
            self.stdout.write("    " + "  ".join(_cell(point[key]) for key in
                                                 ("step", "reward", "accuracy", "length", "reflection")))


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
