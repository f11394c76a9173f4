#!/usr/bin/env python3
"""One-step arithmetic word problems as JSONL for `didact data import --kind
numeric` (question, answer, split): the tasks of configs/smollm2-cpu.toml.

Sums of two digits, a teen number minus a digit, and products of two digits,
in everyday sentences. Sized so that SmolLM2-135M-Instruct
solves some but not most on its first attempt (see the config's comments
for the measured rate). Deterministic for a seed; prompts are distinct.

    python3 scripts/make_word_problems.py --out runs/word-problems/word-problems.jsonl
"""

import argparse
import json
import os
import random

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo"]
ITEMS = ["apples", "books", "marbles", "pencils", "stamps", "shells", "cards", "coins"]


def problem(rng):
    name, other = rng.sample(NAMES, 2)
    items = rng.choice(ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?", a + b
    if kind == 1:
        a, b = rng.randint(11, 19), rng.randint(2, 9)
        return f"{name} has {a} {items} and gives {b} of them to {other}. How many {items} does {name} have left?", a - b
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"{name} buys {a} bags with {b} {items} in each bag. How many {items} does {name} buy?", a * b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/word-problems/word-problems.jsonl")
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seen, rows = set(), []
    splits = ["train"] * args.train + ["val"] * args.val + ["test"] * args.test
    for split in splits:
        while True:
            q, a = problem(rng)
            if q not in seen:
                seen.add(q)
                break
        rows.append({"question": q, "answer": str(a), "split": split})
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(rows)} problems (train {args.train}, val {args.val}, test {args.test})")


if __name__ == "__main__":
    main()
