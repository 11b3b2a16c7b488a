"""Normalisation of the identifiers matched: two spellings of one e-mail
address, phone number or company domain give one identifier, and what is
not one gives none."""

from __future__ import annotations

import pytest

from partners.data_sharing.identifiers import normalise_domain, normalise_email, normalise_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("ann@bücher.de", "ann@xn--bcher-kva.de"),
        # Gmail's dots and tags are kept (see the module's docstring).
        ("a.n.n+promo@gmail.com", "a.n.n+promo@gmail.com"),
        ("ann@example.com.", "ann@example.com"),
        ("no-at-sign.example.com", None),
        ("two@@example.com", None),
        ("@example.com", None),
        ("ann@localhost", None),
        ("an n@example.com", None),
        ("", None),
    ],
)
def test_emails(raw: str, expected: str | None) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+27 82 123 4567", None, "+27821234567"),
        ("082 123 4567", "ZA", "+27821234567"),
        ("(082) 123-4567", "ZA", "+27821234567"),
        ("+1 (415) 555-2671", "ZA", "+14155552671"),
        ("0044 20 7946 0958", "ZA", "+442079460958"),  # 00: South Africa's exit code
        ("020 7946 0958", "GB", "+442079460958"),
        ("082 123 4567", None, None),  # no country code and no region
        ("12", "ZA", None),
        ("call me", "ZA", None),
    ],
)
def test_phones(raw: str, region: str | None, expected: str | None) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Example.com/about?x=1", "example.com"),
        ("http://shop.example.co.za:8080/", "shop.example.co.za"),
        ("WWW.EXAMPLE.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("www.com", "www.com"),
        ("user@example.org", "example.org"),
        ("not a domain", None),
        ("localhost", None),
        ("", None),
    ],
)
def test_domains(raw: str, expected: str | None) -> None:
    assert normalise_domain(raw) == expected
