"""The registry of ledger codes keeps its promises: each code in its
domain's range, one meaning per number, a name for every movement."""

from __future__ import annotations

import enum

import pytest

from core.codes import (
    COLLABORATION_RANGES,
    DOMAIN_RANGES,
    MOVEMENT_NAMES,
    PARTNER_TRANSFER_RANGES,
    AccountCode,
    TransferCode,
    domain_of,
    movement_name,
)

#: The domain each code belongs to, by the prefix of its name (the rest are
#: the rewards domain's).
_PARTNER_PREFIX = "PARTNER_"


def _domain(code: AccountCode | TransferCode) -> str:
    if code.name.startswith(_PARTNER_PREFIX):
        return "partners"
    if code.name.startswith("FINANCE_"):
        return "finance"
    if code.name.startswith(tuple(COLLABORATION_RANGES)):
        return "collaboration"
    return "rewards"


@pytest.mark.parametrize("code", [*AccountCode, *TransferCode], ids=lambda c: repr(c))
def test_every_code_lies_in_its_domains_range(code: AccountCode | TransferCode) -> None:
    assert code in DOMAIN_RANGES[_domain(code)]
    assert domain_of(code) == _domain(code)


def test_domain_ranges_do_not_overlap() -> None:
    numbers = [n for codes in DOMAIN_RANGES.values() for n in codes]
    assert len(numbers) == len(set(numbers))
    assert 0 not in numbers  # the ledger refuses code 0 (code_required)


def test_partner_ranges_lie_in_the_partners_range_apart() -> None:
    numbers = [n for codes in PARTNER_TRANSFER_RANGES.values() for n in codes]
    assert len(numbers) == len(set(numbers))
    assert set(numbers) <= set(DOMAIN_RANGES["partners"])
    for kind, codes in PARTNER_TRANSFER_RANGES.items():
        assert TransferCode[f"PARTNER_{kind.upper()}"] in codes


def test_collaboration_codes_lie_in_their_kinds_range() -> None:
    numbers = [n for codes in COLLABORATION_RANGES.values() for n in codes]
    assert len(numbers) == len(set(numbers))
    assert set(numbers) <= set(DOMAIN_RANGES["collaboration"])
    for code in [*AccountCode, *TransferCode]:
        for prefix, codes in COLLABORATION_RANGES.items():
            if code.name.startswith(prefix):
                assert code in codes, code


@pytest.mark.parametrize("kind", [AccountCode, TransferCode])
def test_no_two_members_share_a_number(kind: type[enum.IntEnum]) -> None:
    # An alias would give one number two meanings; enum.unique refuses it.
    assert enum.unique(kind) is kind
    assert len({c.value for c in kind}) == len(kind.__members__)


def test_every_transfer_code_has_a_movement_name() -> None:
    assert set(MOVEMENT_NAMES) == set(TransferCode)
    names = [movement_name(code) for code in TransferCode]
    assert len(names) == len(set(names)), "two kinds of movement read the same"
    assert all(name and not name.isdigit() for name in names)


def test_an_unknown_code_reads_as_its_number() -> None:
    assert movement_name(999) == "999"
    with pytest.raises(ValueError, match="no domain"):
        domain_of(999)


def test_codes_posted_before_the_registry_keep_their_numbers_and_names() -> None:
    # Transfers are immutable: the codes 1-9 in the ledger keep meaning what
    # they meant, and the member app keeps calling them what it did.
    before = {
        1: "earn",
        2: "return_reversal",
        3: "debt",
        4: "debt_repayment",
        5: "redemption",
        6: "expiry",
        7: "adjustment",
        8: "gift",
        9: "event",
    }
    assert {n: movement_name(n) for n in before} == before
