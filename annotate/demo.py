"""Demo data for a fresh install: four projects (one per kind), written for the demo, and the
users who work on them. `seed_demo` calls `demo_seed`; running it again changes nothing."""

from __future__ import annotations

import io
from dataclasses import dataclass

import orjson
from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Kind, Project, Role
from .services import item_import, membership_set, project_create

PASSWORD = "prefhub-demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    superuser: bool = False
    staff: bool = False  # staff create projects from the pages


USERS = [
    DemoUser("admin", Role.ADMIN, superuser=True),
    DemoUser("researcher", Role.RESEARCHER, staff=True),
    DemoUser("annotator1", Role.ANNOTATOR),
    DemoUser("annotator2", Role.ANNOTATOR),
]

# Each question with four answers, best first: the pairwise demo compares the best with one of
# the others, the listwise demo ranks all four, the span demo marks errors in a flawed one and
# the ratings demo rates two of them.
QUESTIONS: list[tuple[str, list[str]]] = [
    (
        "Why is the sky blue?",
        [
            "Sunlight is scattered by the molecules of the air, and short (blue) wavelengths are "
            "scattered far more than long (red) ones: this is **Rayleigh scattering**. So blue "
            "light reaches your eyes from every direction of the sky.",
            "Because air scatters blue light more than red light.",
            "The sky reflects the colour of the oceans, which cover most of the Earth.",
            "It is blue because of the ozone layer, which is blue-coloured gas.",
        ],
    ),
    (
        "How many bones does an adult human have?",
        [
            "An adult human has **206 bones**. Babies are born with about 270, and some fuse "
            "together as they grow.",
            "About 206.",
            "An adult has 300 bones, the same number as a newborn.",
            "Humans have 150 bones, most of them in the hands.",
        ],
    ),
    (
        "Write a Python function that reverses a string.",
        [
            "```python\ndef reverse(text: str) -> str:\n    return text[::-1]\n```\n"
            "Slicing with a step of -1 walks the string backwards.",
            "```python\ndef reverse(s):\n    return ''.join(reversed(s))\n```",
            "```python\ndef reverse(s):\n    s.reverse()\n    return s\n```\n"
            "Strings have a reverse() method.",
            "Use `string.flip()`.",
        ],
    ),
    (
        "What is the capital of Australia?",
        [
            "The capital of Australia is **Canberra**, chosen in 1908 as a compromise between "
            "Sydney and Melbourne.",
            "Canberra.",
            "Sydney, the largest city, is the capital.",
            "Melbourne has been the capital since 1788.",
        ],
    ),
    (
        "Give me three tips for better sleep.",
        [
            "1. Keep a regular schedule, weekends included.\n2. Avoid caffeine after midday.\n"
            "3. Keep the bedroom dark, quiet and cool.",
            "Go to bed at the same time, skip late coffee, and keep screens out of the bedroom.",
            "Sleep more. Sleep better. Sleep longer.",
            "Drink an espresso before bed: it relaxes the muscles.",
        ],
    ),
    (
        "What does HTTP status code 404 mean?",
        [
            "**404 Not Found**: the server was reached but has nothing at the requested URL. It "
            "says nothing about whether the resource may exist later.",
            "It means the page was not found.",
            "404 means the server crashed.",
            "It is the code for a successful request.",
        ],
    ),
    (
        "Translate 'good morning' into French.",
        [
            "*Bonjour* is the usual greeting; *bon matin* is used in Quebec.",
            "Bonjour.",
            "Bonne nuit.",
            "Guten Morgen.",
        ],
    ),
    (
        "Explain what a hash table is in one paragraph.",
        [
            "A hash table stores key-value pairs in an array: a hash function turns each key into "
            "an index, so lookups, inserts and deletes take constant time on average. Collisions "
            "(two keys with one index) are handled by chaining or open addressing.",
            "A data structure that maps keys to values using a hash function.",
            "A hash table is a sorted list that you search with binary search.",
            "It is a table of hashtags used on social media.",
        ],
    ),
    (
        "Is it safe to eat raw chicken?",
        [
            "No. Raw chicken often carries *Salmonella* and *Campylobacter*; cook it until the "
            "thickest part reaches 74 °C (165 °F).",
            "No, cook it fully first.",
            "Yes, if the chicken is fresh from the supermarket.",
            "Yes, raw chicken is a good source of probiotics.",
        ],
    ),
    (
        "Summarise the plot of Romeo and Juliet in two sentences.",
        [
            "Two young lovers from feuding families in Verona marry in secret. A chain of "
            "misunderstandings leads both to take their own lives, which finally reconciles "
            "their families.",
            "Two teenagers from rival families fall in love and it ends tragically.",
            "Romeo and Juliet run away together and live happily in Mantua.",
            "It is a comedy about two friends who open a restaurant.",
        ],
    ),
    (
        "What is 15% of 80?",
        [
            "15% of 80 is **12** (0.15 × 80 = 12).",
            "12.",
            "15% of 80 is 15.",
            "It is 120.",
        ],
    ),
    (
        "How do I undo the last git commit but keep my changes?",
        [
            "Run `git reset --soft HEAD~1`: the commit is removed and its changes stay staged. "
            "Use `git reset HEAD~1` to keep them unstaged instead.",
            "`git reset --soft HEAD~1`",
            "`git reset --hard HEAD~1` keeps your changes.",
            "Delete the .git folder and start again.",
        ],
    ),
    (
        "Who wrote 'Pride and Prejudice'?",
        [
            "**Jane Austen**, published in 1813.",
            "Jane Austen.",
            "Charlotte Brontë wrote it in 1847.",
            "Charles Dickens.",
        ],
    ),
    (
        "What causes the seasons on Earth?",
        [
            "The tilt of Earth's axis (about 23.4°): as Earth orbits the Sun, each hemisphere "
            "leans towards the Sun for part of the year and gets more direct sunlight and longer "
            "days.",
            "The tilt of the Earth's axis.",
            "Earth is closer to the Sun in summer and farther in winter.",
            "The Moon blocks sunlight in winter.",
        ],
    ),
    (
        "Suggest a name for a bakery.",
        [
            "*Rise & Shine Bakery*: short, cheerful, and a pun on dough rising.",
            "The Daily Loaf.",
            "Bakery.",
            "Steve's Hardware.",
        ],
    ),
    (
        "What is the boiling point of water at sea level?",
        [
            "**100 °C (212 °F)** at standard atmospheric pressure; it is lower at altitude.",
            "100 degrees Celsius.",
            "90 °C.",
            "Water does not boil at sea level.",
        ],
    ),
    (
        "How do vaccines work?",
        [
            "A vaccine shows the immune system a harmless piece or version of a pathogen, so it "
            "makes antibodies and memory cells. If the real pathogen comes later, the body "
            "recognises it and responds fast.",
            "They train your immune system to recognise a germ.",
            "Vaccines kill every germ in the body for a year.",
            "They work by changing your DNA permanently.",
        ],
    ),
    (
        "Write a haiku about autumn.",
        [
            "Crisp leaves drift and fall\nthe maple lets go of red\nwind carries it home",
            "Leaves fall from the trees\nAutumn is here once again\nThe air is colder",
            "Autumn is a season that comes after summer and before winter.",
            "Snow falls on the beach\nsummer sun is very hot\nspring flowers bloom",
        ],
    ),
    (
        "What is the difference between weather and climate?",
        [
            "Weather is the state of the atmosphere at a place and time (today's rain); climate "
            "is the average of weather over decades (a region's typical rainfall).",
            "Weather is short term, climate is long term.",
            "They are the same thing.",
            "Climate is the weather in the morning.",
        ],
    ),
    (
        "Recommend a way to learn a new language.",
        [
            "Practise a little every day: spaced-repetition flashcards for vocabulary, and "
            "conversation with native speakers (or a tutor) from the first weeks.",
            "Use an app daily and talk to native speakers.",
            "Read a grammar book once.",
            "Languages cannot be learned after age 12.",
        ],
    ),
    (
        "What is photosynthesis?",
        [
            "The process by which plants, algae and some bacteria use light energy to turn "
            "carbon dioxide and water into glucose, releasing oxygen.",
            "How plants make food from sunlight.",
            "The way plants breathe in oxygen at night.",
            "A type of camera used to photograph plants.",
        ],
    ),
    (
        "Convert 5 kilometres to miles.",
        [
            "5 km ≈ **3.11 miles** (1 km = 0.621 mi).",
            "About 3.1 miles.",
            "5 km is 8 miles.",
            "5 miles.",
        ],
    ),
    (
        "Name the planets of the solar system in order.",
        [
            "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune.",
            "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune (Pluto is a dwarf "
            "planet).",
            "Mercury, Venus, Earth, Mars, Saturn, Jupiter, Neptune, Uranus, Pluto.",
            "Earth, Moon, Sun, Mars.",
        ],
    ),
    (
        "日本の首都はどこですか？",
        [
            "日本の首都は**東京**です。1868年に京都から移りました。",
            "東京です。",
            "京都です。",
            "大阪です。🏯",
        ],
    ),
]

# A few chat prompts, so that the pages show conversations too.
CHATS: list[tuple[list[dict], list[str]]] = [
    (
        [
            {"role": "user", "content": "I have eggs, spinach and cheese."},
            {"role": "assistant", "content": "Nice! Do you want breakfast or dinner ideas?"},
            {"role": "user", "content": "Dinner, something quick."},
        ],
        [
            "Make a spinach and cheese frittata: wilt the spinach, pour in beaten eggs, top with "
            "cheese and finish under the grill. About 15 minutes.",
            "An omelette with spinach and cheese.",
            "Order a pizza.",
            "Boil the cheese for 40 minutes.",
        ],
    ),
    (
        [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What's the square root of 144?"},
        ],
        ["12.", "The square root of 144 is 12, because 12 × 12 = 144.", "14.", "72."],
    ),
]

SPAN_GUIDELINES = """Highlight every span of the response that is wrong, and pick its error type.

- **unverifiable / wrong-grounding**: factual errors.
- **irrelevant / redundant / incoherent**: the rest.

If the response has no errors, say so with **No errors**. Write a correction when you can."""

PROJECTS = [
    {
        "name": "Demo: pairwise",
        "kind": Kind.PAIRWISE,
        "overlap": 2,
        "guidelines": (
            "Which response answers the prompt better? Prefer **correct**, then **helpful**, "
            "then **concise**. Choose *tie* only when neither is better.\n\n"
            "Keys: `1` A, `2` B, `0` tie, then the strength."
        ),
    },
    {
        "name": "Demo: listwise",
        "kind": Kind.LISTWISE,
        "overlap": 1,
        "guidelines": "Rank the responses from best to worst: correctness first, then clarity.",
    },
    {
        "name": "Demo: spans",
        "kind": Kind.SPANS,
        "overlap": 1,
        "guidelines": SPAN_GUIDELINES,
    },
    {
        "name": "Demo: ratings",
        "kind": Kind.RATINGS,
        "overlap": 1,
        "guidelines": "Rate each response on every aspect, 1 (poor) to 5 (excellent).",
    },
]


def demo_items(kind: str) -> list[dict]:
    """The demo rows of one kind, in our own import shape."""
    prompts = [(question, answers) for question, answers in QUESTIONS] + CHATS
    rows = []
    for n, (prompt, answers) in enumerate(prompts):
        rows.append(
            {"external_id": f"demo-{kind}-{n:02d}", "prompt": prompt, **_shape(kind, n, answers)}
        )
    return rows


MODELS = ["demo-large", "demo-medium", "demo-small", "demo-tiny"]


def _shape(kind: str, n: int, answers: list[str]) -> dict:
    # Demo content, not a kind's rule: a kind without an entry here gets no demo project.
    return _SHAPES[kind](n, answers[0], answers[1 + n % 3], answers)


def _pairwise_shape(n: int, best: str, worse: str, answers: list[str]) -> dict:
    # Alternate the better answer between A and B, and give a few items a known answer.
    pair = [(best, MODELS[0]), (worse, MODELS[1 + n % 3])]
    if n % 2:
        pair.reverse()
    responses = [{"id": rid, "text": t, "model": m} for rid, (t, m) in zip("ab", pair, strict=True)]
    row: dict = {"responses": responses}
    if n % 8 == 0:
        row["gold"] = {"choice": "B" if n % 2 else "A", "strength": 2}
    return row


def _listwise_shape(n: int, best: str, worse: str, answers: list[str]) -> dict:
    order = [(n + k) % 4 for k in range(4)]
    return {"responses": [{"id": f"r{i}", "text": answers[i], "model": MODELS[i]} for i in order]}


def _spans_shape(n: int, best: str, worse: str, answers: list[str]) -> dict:
    return {"responses": [{"id": "r", "text": worse if n % 4 else best, "model": MODELS[1]}]}


def _ratings_shape(n: int, best: str, worse: str, answers: list[str]) -> dict:
    return {
        "responses": [
            {"id": "a", "text": best, "model": MODELS[0]},
            {"id": "b", "text": worse, "model": MODELS[1 + n % 3]},
        ]
    }


_SHAPES = {
    "pairwise": _pairwise_shape,
    "listwise": _listwise_shape,
    "spans": _spans_shape,
    "ratings": _ratings_shape,
}


def demo_seed() -> dict:
    """Create (or complete) the demo users, projects and items. Returns what was created."""
    created = {"users": 0, "projects": 0, "items": 0}
    with transaction.atomic():
        users = {}
        for spec in USERS:
            users[spec.username], new = _demo_user(spec)
            created["users"] += new
        for spec in PROJECTS:
            project = Project.objects.filter(name=spec["name"]).first()
            if project is None:
                project = project_create(**spec, created_by=users["admin"])
                created["projects"] += 1
            for demo_user in USERS:
                if not project.memberships.filter(user=users[demo_user.username]).exists():
                    membership_set(
                        project=project, user=users[demo_user.username], role=demo_user.role
                    )
            body = b"\n".join(orjson.dumps(row) for row in demo_items(project.kind))
            report = item_import(project=project, stream=io.BytesIO(body), fmt="jsonl")
            if not report.ok:
                raise RuntimeError(f"demo items of {project.name} are invalid: {report.summary()}")
            created["items"] += report.created
    return created


def _demo_user(spec: DemoUser) -> tuple[object, bool]:
    User = get_user_model()
    user, new = User.objects.get_or_create(
        username=spec.username,
        defaults={"is_staff": spec.superuser or spec.staff, "is_superuser": spec.superuser},
    )
    if new:
        # Only on creation: a demo user who changed their password keeps it.
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    return user, new
