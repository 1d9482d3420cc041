"""Run-health rules: the signs that an RL run is going wrong, read from its per-step figures.

Plain functions over a table of steps, so the dashboard (figures from the stored rollouts and the
trainer's metrics) and the trainer's stop rule (TRL's logs, in the training process) share them.

One step of a small GRPO run is noise: 64 completions at an accuracy of 0.1 swing by ±0.04 from one
step to the next, and the best of many 5-step means sits well above the true rate. So the rules
compare BLOCK-step blocks (the last block against earlier ones), a fall in accuracy must also be
significant (a one-sided two-proportion z-test on the blocks' pooled completions at the level of
z ≥ Z_FALL, Bonferroni-corrected for the earlier blocks the best was chosen from), and
no rule speaks before MIN_STEPS steps. The thresholds were set on recorded runs of the tiny model
(tests/training/recorded: one that collapsed, one that did not, and three 400-step runs that learned)
so that the collapsing run raises its alert within the run and the others stay quiet at every step,
or nearly (the long runs' dips of accuracy); benchmarks/RESULTS.md has the counts.

The rules:
- format_over_accuracy: accuracy in the last block fell below the best earlier block by at least
  ACCURACY_FALL of it (and ACCURACY_FALL_MIN absolute), significantly, while the format reward rose
  by at least FORMAT_RISE since that block or held at FORMAT_SATURATED or more (a format SFT can leave
  it there from the first step: the run keeps the format and loses the answers).
- length_collapse: the last block's mean response length is under LENGTH_COLLAPSE of the best block's.
- length_cap: at least AT_CAP of the last block's completions stopped at the length cap.
- entropy_explosion / entropy_collapse: the last block's mean token entropy is over ENTROPY_EXPLOSION
  times, or under ENTROPY_COLLAPSE times, the first block's.
- no_signal: at least NO_SIGNAL of the last block's groups had all-equal rewards (TRL's
  frac_reward_zero_std): their advantages are zero and they teach nothing.
- kl_spike / clip_spike: a step whose KL is over SPIKE times the median of the BLOCK steps before it
  (and over KL_FLOOR), or whose clipped-token ratio is over CLIP_SPIKE.
- dominating_component: one reward component other than accuracy makes at least DOMINANT of the last
  block's weighted total (by absolute value), up by at least DOMINANT_RISE from the first block.
"""

import math
import re
import statistics
from dataclasses import asdict, dataclass, field

BLOCK = 10
MIN_STEPS = 2 * BLOCK
Z_FALL = 3.0
DEFAULT_SAMPLES = 64  # completions per step, where a step does not say
FORMAT_RISE = 0.1
FORMAT_SATURATED = 0.9
ACCURACY_FALL = 0.25
ACCURACY_FALL_MIN = 0.02
LENGTH_COLLAPSE = 0.5
AT_CAP = 0.5
ENTROPY_EXPLOSION = 2.0
ENTROPY_COLLAPSE = 0.25
NO_SIGNAL = 0.8
SPIKE = 10.0
KL_FLOOR = 0.05
CLIP_SPIKE = 0.2
DOMINANT = 0.9
DOMINANT_RISE = 0.1

ACCURACY_NAME = re.compile(r"acc|correct", re.IGNORECASE)
FORMAT_NAME = re.compile(r"format", re.IGNORECASE)

RULES = {
    "format_over_accuracy": "Format reward rising while accuracy falls",
    "length_collapse": "Response length collapsing",
    "length_cap": "Most completions hit the length cap",
    "entropy_explosion": "Token entropy exploding",
    "entropy_collapse": "Token entropy collapsing",
    "no_signal": "Most groups carry no signal",
    "kl_spike": "KL spiking",
    "clip_spike": "Clip ratio spiking",
    "dominating_component": "One reward component dominates the total",
}


@dataclass
class Step:
    """One step's figures; None where the run does not have it."""

    step: int
    accuracy: float | None = None
    format: float | None = None
    length: float | None = None
    truncated: float | None = None
    entropy: float | None = None
    kl: float | None = None
    clip_ratio: float | None = None
    zero_std_groups: float | None = None  # TRL's frac_reward_zero_std
    components: dict[str, float] = field(default_factory=dict)  # weighted means of each reward component
    samples: int | None = None  # completions the step's figures are over


@dataclass
class Alert:
    rule: str
    title: str
    message: str
    steps: list[int]  # the steps whose figures raised it

    def as_dict(self) -> dict:
        return asdict(self)


def _values(steps: list[Step], name: str) -> list[tuple[Step, float]]:
    return [(s, v) for s in steps if isinstance(v := getattr(s, name), (int, float)) and math.isfinite(v)]


def _blocks(pairs: list) -> list[list]:
    """Consecutive BLOCK-long blocks, counted back from the newest step (the last block is the latest)."""
    return [pairs[end - BLOCK:end] for end in range(len(pairs), BLOCK - 1, -BLOCK)][::-1]


def _mean(pairs) -> float:
    return sum(v for _, v in pairs) / len(pairs)


def _steps(pairs) -> list[int]:
    return [s.step for s, _ in pairs]


def _proportion(pairs) -> tuple[float, float]:
    """(successes, trials) of a block of per-step rates: each step's rate over its completions."""
    trials = [s.samples or DEFAULT_SAMPLES for s, _ in pairs]
    return sum(v * n for (_, v), n in zip(pairs, trials, strict=True)), sum(trials)


def _fell_significantly(before, after, compared: int = 1) -> bool:
    """A one-sided two-proportion z-test: is the rate of `after` lower than that of `before`? `before` is
    the best of `compared` blocks, so the level is Bonferroni-corrected for them: the best of 39 noisy
    blocks sits above the true rate, and a 400-step healthy run raised the uncorrected test 14–51 times."""
    (k1, n1), (k2, n2) = _proportion(before), _proportion(after)
    pooled = (k1 + k2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    needed = statistics.NormalDist().inv_cdf(1 - (1 - statistics.NormalDist().cdf(Z_FALL)) / compared)
    return spread > 0 and (k1 / n1 - k2 / n2) / spread >= needed


def accuracy_fall(steps: list[Step]) -> tuple[list, float, float] | None:
    """(the best earlier block, its accuracy, the last block's) when accuracy fell as the rules mean it."""
    blocks = _blocks(_values(steps, "accuracy"))
    if len(blocks) < 2:
        return None
    best = max(blocks[:-1], key=_mean)
    high, low = _mean(best), _mean(blocks[-1])
    if high - low < max(ACCURACY_FALL_MIN, ACCURACY_FALL * high) or not _fell_significantly(
            best, blocks[-1], compared=len(blocks) - 1):
        return None
    return best, high, low


def check(steps: list[Step]) -> list[Alert]:
    """Every rule's alert for the run so far (in RULES order); empty for a healthy run."""
    alerts = []
    for rule in (_format_over_accuracy, _length, _entropy, _no_signal, _spikes, _dominating_component):
        alerts.extend(rule(steps))
    return alerts


def _format_over_accuracy(steps):
    fall = accuracy_fall(steps)
    formats = {s.step: v for s, v in _values(steps, "format")}
    if fall is None:
        return []
    best, high, low = fall
    recent = _blocks(_values(steps, "accuracy"))[-1]
    format_then = [formats[s.step] for s, _ in best if s.step in formats]
    format_now = [formats[s.step] for s, _ in recent if s.step in formats]
    if not (format_then and format_now):
        return []
    then, now = sum(format_then) / len(format_then), sum(format_now) / len(format_now)
    if now - then < FORMAT_RISE and not (now >= FORMAT_SATURATED and now >= then - ACCURACY_FALL_MIN):
        return []
    went = "rose" if now - then >= FORMAT_RISE else "held"
    return [Alert("format_over_accuracy", RULES["format_over_accuracy"],
                  f"Format reward {went} ({then:.2f} → {now:.2f}) while accuracy fell from {high:.3f} "
                  f"(steps {best[0][0].step}–{best[-1][0].step}) to {low:.3f}: the run is learning the format at "
                  "the expense of the answers. Lower the learning rate or add warmup.", _steps(recent))]


def _length(steps):
    alerts = []
    blocks = _blocks(_values(steps, "length"))
    if len(blocks) >= 2:
        best, recent = max(_mean(b) for b in blocks[:-1]), _mean(blocks[-1])
        if best > 0 and recent < LENGTH_COLLAPSE * best:
            alerts.append(Alert("length_collapse", RULES["length_collapse"],
                                f"Mean response length fell from {best:.1f} to {recent:.1f}: the model is "
                                "giving up its reasoning.", _steps(blocks[-1])))
    truncated = _values(steps, "truncated")
    if len(truncated) >= MIN_STEPS and (share := _mean(truncated[-BLOCK:])) >= AT_CAP:
        alerts.append(Alert("length_cap", RULES["length_cap"],
                            f"{share:.0%} of recent completions stopped at the length cap: their answers are cut "
                            "off and score as wrong. Raise max_completion_length or penalise length.",
                            _steps(truncated[-BLOCK:])))
    return alerts


def _entropy(steps):
    blocks = _blocks(_values(steps, "entropy"))
    if len(blocks) < 2:
        return []
    first, recent = _mean(blocks[0]), _mean(blocks[-1])
    if first <= 0:
        return []
    if recent > ENTROPY_EXPLOSION * first:
        return [Alert("entropy_explosion", RULES["entropy_explosion"],
                      f"Mean token entropy rose from {first:.2f} to {recent:.2f}: sampling is turning random "
                      "(garbled text follows).", _steps(blocks[-1]))]
    if recent < ENTROPY_COLLAPSE * first:
        return [Alert("entropy_collapse", RULES["entropy_collapse"],
                      f"Mean token entropy fell from {first:.2f} to {recent:.2f}: the samples of a group are "
                      "becoming identical, so they stop teaching anything.", _steps(blocks[-1]))]
    return []


def _no_signal(steps):
    zero = _values(steps, "zero_std_groups")
    if len(zero) < MIN_STEPS or (share := _mean(zero[-BLOCK:])) < NO_SIGNAL:
        return []
    return [Alert("no_signal", RULES["no_signal"],
                  f"{share:.0%} of recent groups had all-equal rewards: their advantages are zero. Use harder "
                  "or easier prompts, larger groups, or a finer-grained reward.", _steps(zero[-BLOCK:]))]


def _spikes(steps):
    alerts = []
    kl = _values(steps, "kl")
    spiked = [s.step for i, (s, value) in enumerate(kl) if i >= BLOCK and value > KL_FLOOR
              and value > SPIKE * statistics.median(v for _, v in kl[i - BLOCK:i])]
    if spiked:
        alerts.append(Alert("kl_spike", RULES["kl_spike"],
                            f"KL jumped over {SPIKE:g}× its recent median at step{'s' if len(spiked) > 1 else ''} "
                            f"{', '.join(map(str, spiked[:10]))}: the policy moved far from the reference in one step.",
                            spiked))
    clipped = [s.step for s, value in _values(steps, "clip_ratio") if value > CLIP_SPIKE]
    if clipped:
        alerts.append(Alert("clip_spike", RULES["clip_spike"],
                            f"Over {CLIP_SPIKE:.0%} of tokens were clipped at step{'s' if len(clipped) > 1 else ''} "
                            f"{', '.join(map(str, clipped[:10]))}: the updates are too large for the clip range.",
                            clipped))
    return alerts


def _dominating_component(steps):
    with_components = [s for s in steps if len(s.components) >= 2]
    if len(with_components) < MIN_STEPS:
        return []

    def shares(block):
        totals: dict[str, float] = {}
        for s in block:
            for name, value in s.components.items():
                totals[name] = totals.get(name, 0.0) + abs(value)
        whole = sum(totals.values())
        return {name: value / whole for name, value in totals.items()} if whole else {}

    first, recent = shares(with_components[:BLOCK]), shares(with_components[-BLOCK:])
    for name, share in recent.items():
        if ACCURACY_NAME.search(name) or share < DOMINANT or share - first.get(name, 0.0) < DOMINANT_RISE:
            continue
        return [Alert("dominating_component", RULES["dominating_component"],
                      f"{name} makes {share:.0%} of the recent total reward (from {first.get(name, 0.0):.0%}): the "
                      "run optimises it, not the answers.", [s.step for s in with_components[-BLOCK:]])]
    return []


# ---- the stop rule -------------------------------------------------------------------------

@dataclass(frozen=True)
class StopRule:
    """Stop training when the format reward is at least `format_at_least` and accuracy has fallen (as
    format_over_accuracy means it: significantly, below its best block) at each of the last
    `falling_steps` steps."""

    format_at_least: float
    falling_steps: int

    def should_stop(self, steps: list[Step]) -> str | None:
        """Why to stop now, or None."""
        formats = _values(steps, "format")
        if not formats or (format_now := _mean(formats[-BLOCK:])) < self.format_at_least:
            return None
        falls = [accuracy_fall(steps[:len(steps) - back]) for back in range(self.falling_steps)]
        if not all(falls):
            return None
        _, high, low = falls[0]
        return (f"stopped by the run's stop rule: format reward {format_now:.2f} ≥ {self.format_at_least:g} and "
                f"accuracy below its best ({high:.3f} → {low:.3f}) for {self.falling_steps} steps")


def step_from_trl_logs(step: int, logs: dict, samples: int | None = None) -> Step:
    """A Step from TRL's GRPO logs of one logging step (rewards/<name>/mean per reward function) over
    `samples` completions."""
    rewards = {key.split("/")[1]: value for key, value in logs.items()
               if key.startswith("rewards/") and key.endswith("/mean") and key.count("/") == 2}
    accuracy = next((v for name, v in rewards.items() if ACCURACY_NAME.search(name)), None)
    fmt = next((v for name, v in rewards.items() if FORMAT_NAME.search(name)), None)
    return Step(step=step, accuracy=accuracy, format=fmt, length=logs.get("completions/mean_length"),
                truncated=logs.get("completions/clipped_ratio"), entropy=logs.get("entropy"), kl=logs.get("kl"),
                clip_ratio=logs.get("clip_ratio/region_mean"), zero_std_groups=logs.get("frac_reward_zero_std"),
                samples=samples)
