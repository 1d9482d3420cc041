"""Synthetic, verifiable prompts: made here, so demos and tests need no download."""

import random


def arithmetic_problem(rng: random.Random, steps: int = 2) -> dict:
    """A multi-step word problem over small integers, with its exact integer answer."""
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Goro", "Hana"]
    items = ["apples", "marbles", "coins", "books", "stamps", "shells"]
    name, item = rng.choice(names), rng.choice(items)
    total = rng.randint(2, 40)
    sentences = [f"{name} has {total} {item}."]
    for _ in range(steps):
        op = rng.choice(["gets", "gives", "doubles"] if total < 200 else ["gives"])
        if op == "gets":
            n = rng.randint(1, 30)
            total += n
            sentences.append(f"Then {name} gets {n} more.")
        elif op == "gives" and total > 1:
            n = rng.randint(1, total - 1)
            total -= n
            sentences.append(f"Then {name} gives away {n}.")
        else:
            total *= 2
            sentences.append(f"Then the number of {item} doubles.")
    sentences.append(f"How many {item} does {name} have now?")
    return {"question": " ".join(sentences), "answer": str(total), "domain": "math", "language": "en"}


def arithmetic_dataset(n: int, seed: int = 0, steps: tuple[int, int] = (1, 3)) -> list[dict]:
    """`n` distinct problems (the same seed gives the same list)."""
    rng = random.Random(seed)
    problems: dict[str, dict] = {}
    while len(problems) < n:
        problem = arithmetic_problem(rng, rng.randint(*steps))
        problems.setdefault(problem["question"], problem)
    return list(problems.values())
