"""Synthetic, verifiable prompts: made here, so demos and tests need no download."""

import random
import re


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


def _distinct(make, n: int, seed: int, sizes: tuple[int, int]) -> list[dict]:
    """`n` problems with distinct questions from make(rng, size); the same seed gives the same list."""
    rng = random.Random(seed)
    problems: dict[str, dict] = {}
    while len(problems) < n:
        problem = make(rng, rng.randint(*sizes))
        problems.setdefault(problem["question"], problem)
    return list(problems.values())


def arithmetic_dataset(n: int, seed: int = 0, steps: tuple[int, int] = (1, 3)) -> list[dict]:
    return _distinct(arithmetic_problem, n, seed, steps)


def small_sum_problem(rng: random.Random, largest: int = 9) -> dict:
    """A one-step problem over single digits, worded as `arithmetic_problem` words them: "Ana has 3
    apples. Then Ana gets 4 more. How many apples does Ana have now?" (answer 7)."""
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Goro", "Hana"]
    items = ["apples", "marbles", "coins", "books", "stamps", "shells"]
    name, item = rng.choice(names), rng.choice(items)
    start, more = rng.randint(1, largest), rng.randint(1, largest)
    question = f"{name} has {start} {item}. Then {name} gets {more} more. How many {item} does {name} have now?"
    return {"question": question, "answer": str(start + more), "domain": "math", "language": "en"}


SMALL_SUMS = 8 * 6 * 81  # names × items × (start, more)


def small_sums_dataset(n: int, seed: int = 0) -> list[dict]:
    """`n` distinct single-digit sums (at most SMALL_SUMS exist)."""
    if n > SMALL_SUMS:
        raise ValueError(f"only {SMALL_SUMS} distinct single-digit sums exist, not {n}")
    return _distinct(lambda rng, _size: small_sum_problem(rng), n, seed, (1, 1))


def arithmetic_work(question: str) -> list[str]:
    """The worked steps of an `arithmetic_problem` question, recomputed from its text.

    ["12 + 5 = 17", "17 * 2 = 34"]: what a short chain of thought for it says. Read
    from the text rather than returned by the generator, so that `arithmetic_problem`
    keeps its shape and its random draws (saved demo data and tests depend on both).
    """
    match = _ARITHMETIC_START.search(question)
    if match is None:
        raise ValueError(f"not an arithmetic_problem question: {question[:80]!r}")
    total, steps = int(match.group(1)), []
    for gets, gives, _doubles in _ARITHMETIC_STEP.findall(question):
        if gets:
            new, line = total + int(gets), f"{total} + {gets}"
        elif gives:
            new, line = total - int(gives), f"{total} - {gives}"
        else:
            new, line = total * 2, f"{total} * 2"
        steps.append(f"{line} = {new}")
        total = new
    return steps


_ARITHMETIC_START = re.compile(r"^\w+ has (\d+) \w+\.")
_ARITHMETIC_STEP = re.compile(r"Then \w+ (?:gets (\d+) more|gives away (\d+))\.|Then the number of \w+ (doubles)\.")

# Countdown (the TinyZero task): combine given numbers with + - * / to hit a target.
COUNTDOWN_NUMBERS = (1, 30)  # the range the numbers are drawn from
COUNTDOWN_MAX_TARGET = 999


def countdown_problem(rng: random.Random, n_numbers: int = 3) -> dict:
    """Numbers and a target that some of them reach, with one solution in `metadata`.

    The target is built by combining two of the numbers at a time (as in the game:
    every intermediate result a positive integer, division only when exact) until
    at least two numbers are used, so it is reachable by construction.
    """
    numbers = [rng.randint(*COUNTDOWN_NUMBERS) for _ in range(n_numbers)]
    while True:  # ends: a sum of two numbers (at most 60, more than either) always qualifies
        target, solution, steps = _countdown_combination(rng, numbers, uses=rng.randint(2, n_numbers))
        if target <= COUNTDOWN_MAX_TARGET and target not in numbers:
            break
    question = (
        f"Using the numbers {numbers}, make {target}. You may use + - * / and each number at most once."
    )
    metadata = {"numbers": numbers, "solution": solution, "steps": steps}
    return {"question": question, "answer": str(target), "domain": "math", "language": "en", "metadata": metadata}


def _countdown_combination(rng: random.Random, numbers: list[int], uses: int):
    """Combine `uses` of the numbers: (value, expression, ["25 - 3 = 22", ...])."""
    pool = [(n, str(n)) for n in rng.sample(numbers, uses)]
    steps = []
    while len(pool) > 1:
        (a, a_text), (b, b_text) = pool.pop(), pool.pop()
        if a < b:  # the larger first: a - b and a / b stay positive integers more often
            (a, a_text), (b, b_text) = (b, b_text), (a, a_text)
        op = rng.choice([op for op in "+-*/" if _countdown_allowed(op, a, b)])
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        steps.append(f"{a} {op} {b} = {value}")
        pool.insert(0, (value, f"{_grouped(a_text)} {op} {_grouped(b_text)}"))
    value, text = pool[0]
    return value, text, steps


def _countdown_allowed(op: str, a: int, b: int) -> bool:
    if op == "-":
        return a > b  # no zero or negative intermediate results
    if op == "/":
        return b > 1 and a % b == 0  # exact, and not a no-op
    if op == "*":
        return b > 1  # multiplying by 1 is a no-op
    return True


def _grouped(text: str) -> str:
    """Parenthesised when it is itself a combination, so the solution reads (and evaluates) unambiguously."""
    return f"({text})" if " " in text else text


def countdown_dataset(n: int, seed: int = 0, n_numbers: tuple[int, int] = (3, 4)) -> list[dict]:
    return _distinct(countdown_problem, n, seed, n_numbers)
