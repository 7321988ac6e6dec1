"""Feedback tokens: what they carry, and that a changed, foreign or odd one is refused."""

from __future__ import annotations

import pytest

from digest.domain.tokens import SignedLinks, TokenError, Tokens

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


def test_links_carry_no_address_or_row_id() -> None:
    class Web:
        base_url = "https://digest.example.org"

    class Settings:
        web = Web()

    links = SignedLinks(Settings().web.base_url, Tokens(SECRET))  # type: ignore[arg-type]
    more = links.feedback("abc123", "2104.12255", 1)
    fewer = links.feedback("abc123", "2104.12255", -1)
    assert more.startswith("https://digest.example.org/feedback/") and more != fewer
    assert "@" not in more and "reader" not in more
