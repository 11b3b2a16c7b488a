"""The currencies an exchange rate may name: ISO 4217's current codes of
money (no funds, metals or testing codes), as of the list published in
2025 (XCG and ZWG included), and each one's minor unit
(``partners.money_ledger.asset_scale``, the money ledgers' scale)."""

from __future__ import annotations

from partners.money_ledger import asset_scale

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND
    BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF
    DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
    KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
    SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 (a table of 156 codes reads better as words)
)


def is_currency(code: str) -> bool:
    return code in ISO_4217


def minor_unit(code: str) -> int:
    """The number of decimals of the currency's minor unit (2 for most)."""
    return asset_scale(code)
