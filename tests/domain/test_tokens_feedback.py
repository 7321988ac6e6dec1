"""Feedback tokens: what they carry, and that a changed, foreign or odd one is refused."""

from __future__ import annotations

import json

import pytest

from digest.domain.tokens import (
    DigestFeedbackData,
    FeedbackData,
    SignedLinks,
    TokenError,
    Tokens,
)

SECRET = "token-test-secret-0123456789"


def test_a_feedback_token_names_reader_paper_and_direction_only() -> None:
    tokens = Tokens(SECRET)
    token = tokens.make_feedback("abc123", "2104.12255", 1)
    data = tokens.read_feedback(token)
    assert (data.public_id, data.paper, data.value) == ("abc123", "2104.12255", 1)
    assert tokens.read_feedback(tokens.make_feedback("abc123", "hep-th/9901001", -1)).value == -1
    with pytest.raises(ValueError):
        tokens.make_feedback("abc123", "2104.12255", 2)


def test_a_tampered_token_is_refused() -> None:
    tokens = Tokens(SECRET)
    token = tokens.make_feedback("abc123", "2104.12255", 1)
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), token + "x", "", "x"):
        with pytest.raises(TokenError) as caught:
            tokens.read_feedback(bad)
        assert caught.value.reason == "tampered"
    with pytest.raises(TokenError):
        Tokens("another-secret-0123456789").read_feedback(token)


def test_tokens_of_other_purposes_do_not_work_as_feedback_and_back() -> None:
    tokens = Tokens(SECRET)
    for purpose in ("manage", "unsubscribe", "archive"):
        with pytest.raises(TokenError):
            tokens.read_feedback(tokens.make(purpose, "abc123", 1))
    feedback = tokens.make_feedback("abc123", "2104.12255", 1)
    for purpose in ("manage", "unsubscribe", "archive", "confirm"):
        with pytest.raises(TokenError):
            tokens.read(purpose, feedback)


def test_a_digests_links_share_one_token_and_add_place_and_direction() -> None:
    tokens = Tokens(SECRET)
    links = SignedLinks("https://digest.example.org", tokens)
    delivery = "3f9a0c1d2e4b5a697887766554433221"
    pairs = links.feedback(delivery, 3)
    assert len(pairs) == 3
    start = f"https://digest.example.org/feedback/{tokens.make('digest-feedback', delivery)}~"
    for place, (more, fewer) in enumerate(pairs, start=1):
        assert (more, fewer) == (f"{start}{place}~more", f"{start}{place}~fewer")
        for link, value in ((more, 1), (fewer, -1)):
            data = tokens.read_digest_feedback(link.rsplit("/", 1)[1])
            assert data == DigestFeedbackData(delivery, place, value)
    assert links.feedback(delivery, 0) == []
    assert "@" not in start and "reader" not in start


def test_a_digest_feedback_link_with_a_changed_or_foreign_part_is_refused() -> None:
    tokens = Tokens(SECRET)
    delivery = "3f9a0c1d2e4b5a697887766554433221"
    token = tokens.make("digest-feedback", delivery)
    assert tokens.read_digest_feedback(f"{token}~12~fewer").place == 12
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    bad = [
        f"{forged}~1~more",  # the signature changed
        f"{tokens.make('archive', delivery)}~1~more",  # the same payload, another purpose
        f"{tokens.make_feedback('abc', '2104.12255', 1)}~1~more",
        f"{Tokens('another-secret-0123456789').make('digest-feedback', delivery)}~1~more",
        *(f"{token}~{place}~more" for place in ("0", "01", "-1", "x", "", "1.5", "١", "12345")),
        *(f"{token}~1~{word}" for word in ("most", "", "MORE", "more~", "1", "-1")),
        f"{token}~1",
        f"{token}~~more",
        token,
        "~1~more",
        "",
    ]
    for link in bad:
        with pytest.raises(TokenError) as caught:
            tokens.read_digest_feedback(link)
        assert caught.value.reason == "tampered", link
    # And a digest's token is no token of another purpose.
    for purpose in ("manage", "unsubscribe", "archive", "feedback"):
        with pytest.raises(TokenError):
            tokens.read(purpose, token)


def test_pre_keyed_tokens_are_what_itsdangerous_makes_and_reads() -> None:
    """Links are signed with the key derived once (a digest signs five), and short payloads
    are never compressed (zlib was most of a token's cost): itsdangerous must read every
    token back (links in mails already sent keep working), and where it would not compress
    the payload, make the very same token."""
    import random
    import zlib

    from itsdangerous import URLSafeSerializer

    from digest.domain.tokens import PURPOSES

    secret = "a-secret-key-0123456789-é"
    tokens = Tokens(secret)
    reference = {p: URLSafeSerializer(secret, salt=f"digest.{p}") for p in PURPOSES}
    rng = random.Random(3)
    # Quotes, backslashes and control characters too: JSON escapes them, plain text not.
    alphabet = 'abcXYZ0123456789-_.é漢"\\\n\x01'
    compared = 0

    def same_as_reference(made: str, purpose: str, payload: list[object]) -> None:
        nonlocal compared
        expected = reference[purpose].dumps(payload)
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if not expected.startswith(".") or len(data) > 100:
            assert made == expected
            compared += 1
        assert reference[purpose].loads(made) == payload

    for _ in range(400):
        public_id = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.3:  # compressible: zlib makes it shorter, itsdangerous marks it "."
            public_id = public_id[:3] * rng.choice([5, 40])
        version = rng.choice([None, 0, 1, 12345])
        for purpose in ("manage", "unsubscribe", "archive"):
            made = tokens.make(purpose, public_id, version)
            payload: list[object] = [public_id] if version is None else [public_id, version]
            same_as_reference(made, purpose, payload)
            assert tokens.read(purpose, made).public_id == public_id
        paper = f"{rng.randint(1000, 2999)}.{rng.randint(0, 99999):05d}"
        value = rng.choice([1, -1])
        made = tokens.make_feedback(public_id, paper, value)
        same_as_reference(made, "feedback", [public_id, paper, value])
        assert tokens.read_feedback(made) == FeedbackData(public_id, paper, value)
    assert compared > 1000
    # A real reader's id (32 random hex digits) never compresses: the very same token.
    real = "3f9a0c1d2e4b5a697887766554433221"
    assert len(zlib.compress(json.dumps([real, "2412.01234", 1]).encode())) > 40
    assert tokens.make_feedback(real, "2412.01234", 1) == reference["feedback"].dumps(
        [real, "2412.01234", 1]
    )
    assert tokens.make("manage", "abc" * 40, 1).startswith(".")  # the compressed form ran
