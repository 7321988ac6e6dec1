"""Subscribers and their interests: addresses, schedules, profiles, and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run_cli

from digest.domain import addresses
from digest.domain.categories import CATEGORIES
from digest.domain.profiles import MAX_TERM_CHARS, Profile, Term, build_profile, parse_terms
from digest.domain.schedules import Schedule
from digest.errors import ValidationError
from digest.store import Store, subscribers


def test_terms_words_phrases_and_weights() -> None:
    terms = parse_terms(
        ['"graph neural network"^2, diffusion^0.5; transformers', "rlhf\nLLM agents"]
    )
    assert [(t.text, t.weight, t.is_phrase) for t in terms] == [
        ("graph neural network", 2.0, True),
        ("diffusion", 0.5, False),
        ("transformers", 1.0, False),
        ("rlhf", 1.0, False),
        ("LLM agents", 1.0, True),
    ]
    assert [str(t) for t in terms[:2]] == ['"graph neural network"^2', "diffusion^0.5"]


def test_a_term_and_its_plural_are_one_term() -> None:
    assert len(parse_terms(["transformer, Transformers, TRANSFORMER"])) == 1


MATH = sorted(c for c in CATEGORIES if c.startswith("math."))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"include": ["x" * (MAX_TERM_CHARS + 1)]}, f"at most {MAX_TERM_CHARS} (a sentence"),
        ({"include": ["diffusion^20"]}, "weight 20 is outside 0.1–10"),
        ({"include": ["diffusion^abc"]}, None),
        ({"include": [", ".join(f"word{i}" for i in range(51))]}, "too many include terms: 51"),
        ({"exclude": ["one two three four five six seven"]}, "has more than 6 words"),
        ({"include": ["!!!"]}, "has no letters or digits"),
        ({"exclude": ["survey^2"]}, "weights are not used here"),
        ({"categories": ["cs.XX"]}, "unknown arXiv category 'cs.XX'"),
        ({"categories": [" ".join(MATH[:21])]}, "too many categories: 21 (at most 20)"),
        ({"authors": ["a" * 101]}, "longer than 100 characters"),
        ({"authors": ["?"]}, "does not look like a name"),
    ],
)
def test_profile_limits_give_clear_errors(kwargs: dict, message: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        build_profile(**kwargs)
    if message:
        assert message in str(caught.value)


def test_categories_are_canonical_and_archives_allowed() -> None:
    profile = build_profile(categories=["cs.lg, STAT.ML", "hep-th", "cs"])
    assert profile.categories == ("cs.LG", "stat.ML", "hep-th", "cs")


def test_profile_round_trips_through_json() -> None:
    profile = build_profile(
        ['"graph neural network"^2, rl'], ["survey"], ["cs.LG"], ["Yann LeCun"], True
    )
    assert Profile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
    assert profile.include[0] == Term("graph neural network", 2.0)
    assert Profile().describe() == "today's trending papers"


def test_addresses_are_normalised_and_unique_whatever_their_case(store: Store) -> None:
    schedule = Schedule.checked("Europe/Berlin", 8)
    with store.transaction() as session:
        first, created = subscribers.upsert(
            session, " Ada@Example.ORG ", Profile(), schedule, confirmed=True
        )
        assert created and first.email == "Ada@example.org" and first.status == "active"
        again, created = subscribers.upsert(
            session, "ada@example.org", Profile(), schedule, confirmed=False
        )
        assert not created and again.id == first.id
        assert len(subscribers.listing(session)) == 1
        pending, _ = subscribers.upsert(
            session, "new@example.org", Profile(), schedule, confirmed=False
        )
        assert pending.status == "pending" and pending.confirmed_at is None
        assert subscribers.unsubscribe(first) and not subscribers.unsubscribe(first)
        assert first.status == "unsubscribed" and first.unsubscribed_at is not None
        assert subscribers.counts(session) == {
            "pending": 1,
            "active": 0,
            "unsubscribed": 1,
            "bounced": 0,
        }
        assert len(first.public_id) == 32 and first.public_id != pending.public_id


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "required"),
        ("not an email", "not a valid email address"),
        ("a@b", "not a valid"),
        ("x" * 250 + "@example.org", "too long"),
    ],
)
def test_bad_addresses(address: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        addresses.normalise(address)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Mars/Base", 7), "unknown time zone 'Mars/Base'"),
        (("UTC", 24), "send hour 24: expected 0–23"),
        (("UTC", 7, "monthly"), "frequency 'monthly'"),
        (("UTC", 7, "weekly"), "needs a weekday"),
        (("UTC", 7, "weekly", "someday"), "weekday 'someday'"),
        (("UTC", 7, "daily", None, 51), "papers per mail 51: expected 1–50"),
    ],
)
def test_schedule_checks(args: tuple, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Schedule.checked(*args)


def test_weekly_schedule_keeps_its_day() -> None:
    assert Schedule.checked("UTC", 7, "weekly", "Friday").weekday == 4


def test_subscriber_commands(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        "subscribe",
        "Ada@Example.org",
        "-i",
        '"graph neural network"^2, diffusion',
        "-x",
        "survey",
        "--category",
        "cs.lg",
        "--author",
        "Yann LeCun",
        "--tz",
        "Europe/Berlin",
        "--hour",
        "8",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("subscribed Ada@example.org: daily at 08:00 Europe/Berlin")
    done = run_cli(tmp_path, "subscribe", "ada@example.org", "--hour", "9")
    assert "updated Ada@example.org: daily at 09:00 Europe/Berlin" in done.stdout
    assert '"graph neural network"^2' in done.stdout  # the profile was kept

    listed = [
        json.loads(line) for line in run_cli(tmp_path, "subscribers", "--json").stdout.splitlines()
    ]
    assert [(s["email"], s["status"], s["hour"]) for s in listed] == [
        ("Ada@example.org", "active", 9)
    ]

    shown = run_cli(tmp_path, "profile", "ADA@example.org", "--include", "transformers")
    assert shown.returncode == 0 and "transformers" in shown.stdout and "survey" in shown.stdout

    assert (
        "unsubscribed Ada@example.org" in run_cli(tmp_path, "unsubscribe", "ada@example.org").stdout
    )
    assert "already unsubscribed" in run_cli(tmp_path, "unsubscribe", "ada@example.org").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("subscribe", "not an email"), "error: 'not an email' is not a valid email address"),
        (("subscribe", "x@example.org", "--tz", "Mars/Base"), "error: unknown time zone"),
        (("subscribe", "x@example.org", "--category", "cs.XX"), "error: unknown arXiv category"),
        (("subscribe", "x@example.org", "-i", "a^99"), "error: include term 'a': weight 99"),
        (("unsubscribe", "nobody@example.org"), "error: no subscriber with the address"),
        (("profile", "nobody@example.org"), "error: no subscriber with the address"),
        (("subscribers", "--status", "odd"), "error: status 'odd'"),
        (("preview", "nobody@example.org"), "error: no subscriber with the address"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_cli(tmp_path, *args)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(message)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_preview_and_rank_commands_give_json(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "fetch").returncode == 0
    assert run_cli(tmp_path, "subscribe", "lm@example.org", "-i", "language model").returncode == 0
    preview = run_cli(tmp_path, "preview", "lm@example.org", "--json")
    assert preview.returncode == 0, preview.stderr
    items = [json.loads(line) for line in preview.stdout.splitlines()]
    assert items and all({"id", "title", "score", "reasons"} <= set(i) for i in items)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert any("language model" in r for r in items[0]["reasons"])

    ranked = run_cli(tmp_path, "rank", "-i", "diffusion", "-x", "video", "--json", "--limit", "5")
    rows = [json.loads(line) for line in ranked.stdout.splitlines()]
    assert 0 < len(rows) <= 5
    assert all("video" not in r["title"].lower() for r in rows)
    # Each line says where to open the paper, who wrote it and when it came.
    for row in rows:
        assert {"url", "authors", "categories", "first_seen", "announced_on", "arxiv_id"} <= set(
            row
        )
        assert row["url"].startswith("https://arxiv.org/")
        assert row["first_seen"] and isinstance(row["authors"], list)
        if row["arxiv_id"]:
            assert row["url"] == f"https://arxiv.org/abs/{row['arxiv_id']}"
        else:
            assert row["url"].startswith("https://arxiv.org/search/?")
    table = run_cli(tmp_path, "rank", "-i", "diffusion")
    assert "papers for diffusion" in table.stdout


def test_a_reader_may_describe_an_interest_in_a_sentence(tmp_path: Path) -> None:
    """From the command line, a sentence is a description: ranked by its words, and stored as
    typed when subscribing."""
    sentence = "methods that make large language models smaller and faster at inference time"
    assert run_cli(tmp_path, "fetch").returncode == 0
    ranked = run_cli(tmp_path, "rank", "-i", sentence, "--json", "--limit", "5")
    assert ranked.returncode == 0, ranked.stderr
    rows = [json.loads(line) for line in ranked.stdout.splitlines()]
    assert rows, "a description found nothing in the sample"
    assert all(r["reasons"] for r in rows)
    joined = " ".join(r["title"] + " " + " ".join(r["reasons"]) for r in rows).lower()
    assert "language model" in joined or "llm" in joined

    done = run_cli(tmp_path, "subscribe", "s@example.org", "-i", f"{sentence}^2", "-i", "pruning")
    assert done.returncode == 0, done.stderr
    shown = run_cli(tmp_path, "profile", "s@example.org")
    assert shown.returncode == 0, shown.stderr
    assert f"{sentence}^2" in shown.stdout


def test_the_command_line_help_states_the_profile_limits() -> None:
    """The option help is written out so `--help` need not import the domain; it must agree."""
    from digest.cli.subscribers import ExcludeOpt, IncludeOpt
    from digest.domain.profiles import MAX_PHRASE_WORDS

    words = {6: "six"}[MAX_PHRASE_WORDS]
    include_help = IncludeOpt.__metadata__[0].help
    exclude_help = ExcludeOpt.__metadata__[0].help
    assert f"more than {words} words" in include_help
    assert f"up to {MAX_TERM_CHARS} characters" in include_help
    assert f"at most {words} words" in exclude_help


def test_a_schedule_is_stored_and_read_back_whole(store: Store) -> None:
    weekly = Schedule.checked(
        "America/Chicago", 6, frequency="weekly", weekday="fri", max_papers=25,
        send_when_empty=True,
    )  # fmt: skip
    with store.transaction() as session:
        person, _ = subscribers.upsert(
            session, "ada@example.org", Profile(), Schedule.checked("UTC", 7), confirmed=True
        )
        assert subscribers.schedule_of(person) == Schedule.checked("UTC", 7)
        subscribers.set_schedule(person, weekly)
        person_id = person.id
    with store.transaction() as session:
        [row] = [p for p in subscribers.listing(session) if p.id == person_id]
        assert subscribers.schedule_of(row) == weekly
