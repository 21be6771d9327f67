#!/usr/bin/env python3
"""metrics_pairs.py — golden pairs of the evaluation's metrics (src/eval/metrics.h).

Writes JSONL to stdout: {"pred", "ref", "em", "f1", "bleu"} per pair, where
bleu is nltk's own sentence_bleu([ref.split()], pred.split(),
smoothing_function=SmoothingFunction().method1) and f1 is SQuAD's token F1
without lowercasing or article stripping. tests/reference/make_metrics_golden.sh
adds js-rouge's ROUGE-L. Run with Debian's python3 (python3-nltk 3.8).
Deterministic: a fixed seed.
"""
import json
import random
import sys
from collections import Counter

import nltk
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

assert nltk.__version__.startswith("3.8"), nltk.__version__


def squad_f1(pred, ref):
    p, r = pred.split(), ref.split()
    if not p or not r:
        return float(p == r)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision = 1.0 * same / len(p)
    recall = 1.0 * same / len(r)
    return (2 * precision * recall) / (precision + recall)


def bleu(pred, ref):
    return float(sentence_bleu([ref.split()], pred.split(), smoothing_function=SmoothingFunction().method1))


FIXED = [
    ("", ""), ("", "cat"), ("cat", ""), ("   ", "\t\n"), ("cat", "cat"), ("cat", "dog"), ("Cat", "cat"),
    ("  cat  ", "cat\n"), ("the cat", "the cat"), ("the the the the", "the cat"), ("cat cat cat", "cat"),
    ("a b c d", "a b c d"), ("a b c d e", "a b c d"), ("a b c", "a b c d e f g"), ("d c b a", "a b c d"),
    ("the cat sat on the mat", "the cat is on the mat"), ("one", "one two"), ("one two", "one"),
    ("x y", "y x"), ("über straße", "über strasse"), ("日本 語", "日本 語"), ("日本語", "日本 語"),
    ("a\u00a0b", "a b"), ("a\u3000b", "a b"), ("a\u2009b c", "a b c"), ("a\x1cb", "a b"), ("a\x85b", "a b"),
    ("\u200bzero", "zero"), ("café", "cafe\u0301"), ("emoji 😀 face", "emoji 😀"), ("A", "a"),
    ("New York", "new york"), ("1 2 3 4 5 6 7 8", "1 2 3 4 5 6 7 8 9"), ("to be or not to be", "to be or not"),
    ("a a a b b b", "a b a b a b"), ("tab\tsep", "tab sep"), ("line\r\nbreak", "line break"),
]

WORDS = ["the", "The", "cat", "dog", "sat", "on", "mat", "a", "is", "and", "red", "Red", "über",
         "naïve", "日本", "語", "x", "y", "z", "1", "2", "run", "ran", "running", ",", ".", "don't", "ŝ"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000"]


def rand_text(rng, n):
    if n == 0:
        return rng.choice(["", " ", "\t"])
    toks = [rng.choice(WORDS[: rng.randint(3, len(WORDS))]) for _ in range(n)]
    out = rng.choice(["", "", " ", "\n"])
    for i, t in enumerate(toks):
        out += t + ("" if i == n - 1 else rng.choice(SPACES))
    return out + rng.choice(["", "", " ", "\n"])


def main():
    rng = random.Random(14)
    pairs = list(FIXED)
    while len(pairs) < 400:
        ref = rand_text(rng, rng.choice([0, 1, 1, 2, 3, 4, 5, 6, 8, 12, 20]))
        kind = rng.random()
        if kind < 0.15:
            pred = ref
        elif kind < 0.45:  # an edit of the reference
            toks = ref.split()
            for _ in range(rng.randint(1, 3)):
                op = rng.random()
                if op < 0.4 and toks:
                    toks[rng.randrange(len(toks))] = rng.choice(WORDS)
                elif op < 0.7 and toks:
                    del toks[rng.randrange(len(toks))]
                else:
                    toks.insert(rng.randint(0, len(toks)), rng.choice(WORDS))
            pred = " ".join(toks)
        else:
            pred = rand_text(rng, rng.choice([0, 1, 2, 3, 4, 6, 9, 15]))
        pairs.append((pred, ref))
    for pred, ref in pairs:
        rec = {"pred": pred, "ref": ref, "em": float(pred.strip() == ref.strip()),
               "f1": squad_f1(pred, ref), "bleu": bleu(pred, ref)}
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
