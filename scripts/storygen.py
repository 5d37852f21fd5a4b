"""Deterministic generator of short children's stories: the bundled model's training and eval text.

Why generated text: the repo must ship its own model without a hub or a dataset download, and a small
grammar with repeated entities gives a model that learns real structure (names carried across
sentences, agreement, story arcs) in minutes on two CPU cores, so quantization effects are measurable.
"""

from __future__ import annotations

import random

NAMES = ["Tom", "Lily", "Ben", "Mia", "Max", "Sue", "Sam", "Anna", "Leo", "Zoe", "Tim", "Kate"]
ANIMALS = ["cat", "dog", "bird", "fox", "bunny", "bear", "frog", "duck", "mouse", "owl"]
ADJECTIVES = ["little", "happy", "brave", "shy", "funny", "kind", "sleepy", "curious", "small", "big"]
PLACES = ["park", "forest", "garden", "beach", "house", "farm", "river", "hill", "school", "town"]
OBJECTS = ["ball", "kite", "book", "box", "hat", "cake", "toy", "flower", "stick", "apple"]
COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white"]
FEELINGS = ["happy", "sad", "scared", "excited", "proud", "tired", "surprised"]
ACTIONS = ["play", "run", "jump", "sing", "dance", "read", "swim", "climb"]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _story(rng: random.Random) -> str:
    name, friend = rng.sample(NAMES, 2)
    animal, adjective, place = rng.choice(ANIMALS), rng.choice(ADJECTIVES), rng.choice(PLACES)
    obj, color, action = rng.choice(OBJECTS), rng.choice(COLORS), rng.choice(ACTIONS)
    feeling = rng.choice(FEELINGS)
    other_place = rng.choice([p for p in PLACES if p != place])
    opening = rng.choice([
        f"Once upon a time, there was {_a(adjective)} {animal} named {name}.",
        f"One day, {_a(adjective)} {animal} called {name} went to the {place}.",
        f"There once was {_a(animal)} named {name} who lived near the {place}.",
    ])
    middle = [
        f"{name} liked to {action} with {_a(color)} {obj}.",
        f"One morning, {name} saw {friend} at the {place}.",
        f"\"Can I {action} with you?\" asked {friend}.",
        rng.choice([
            f"\"Yes, let us {action} together!\" said {name}.",
            f"{name} said, \"Yes, you can {action} with me.\"",
        ]),
    ]
    twist = rng.choice([
        f"Then the {color} {obj} fell into the {rng.choice(['river', 'hole', 'bush', 'mud'])}.",
        f"Then the wind took the {color} {obj} far away to the {other_place}.",
        f"But {friend} lost the {color} {obj} at the {other_place}.",
    ])
    ending = rng.choice([
        f"{name} and {friend} looked for the {obj} and found it. They were {feeling} and played all day.",
        f"{friend} helped {name} get the {obj} back. {name} felt {feeling}.",
        f"They went home to the {place}. {name} learned that friends help each other.",
    ])
    return " ".join([opening, *middle, twist, ending])


def generate_stories(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [_story(rng) for _ in range(count)]


def write_corpus(path: str, count: int, seed: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(generate_stories(count, seed)) + "\n")
