"""A tier URL's user:password becomes HTTP Basic auth, and leaves the URL."""

from __future__ import annotations

import base64

from services.router.upstream import split_credentials


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def test_a_url_without_credentials_is_unchanged() -> None:
    assert split_credentials("https://llm.example:8443/v1") == ("https://llm.example:8443/v1", None)


def test_credentials_leave_the_url_and_become_basic_auth() -> None:
    assert split_credentials("https://me:s%40cret@llm.example:8443/v1") == ("https://llm.example:8443/v1",
                                                                           basic("me:s@cret"))


def test_a_user_without_a_password_and_an_ipv6_host() -> None:
    assert split_credentials("http://me@[::1]/v1") == ("http://[::1]/v1", basic("me:"))
