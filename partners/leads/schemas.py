"""What the leads API takes and answers (msgspec structs; every bound is
declared here, so that the OpenAPI document shows it)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from ledger.bounds import (
    NO_NUL,
    Moment,
    NonEmpty,
    NonNegativeBigInt,
    Text200,
    Text500,
    integer_range,
)
from partners.firm_schemas import Email, Phone

REFERENCE_PATTERN = r"^[A-Za-z0-9._~:-]{1,200}$"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DOMAIN_PATTERN = r"^(https?://)?(www\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}/?$"
#: A criterion's value, and a grade: thousandths (0 to 1000).
PERMILLE = integer_range(0, 1000)

Reference = Annotated[
    str,
    msgspec.Meta(
        pattern=REFERENCE_PATTERN,
        description="The registrant's id of the registration (1 to 200 of A-Z a-z 0-9 . _ ~ :"
        " -), unique per partner: sent again with the same fields it answers the first"
        " registration.",
        examples=["deal-2026-0042"],
    ),
]
Code = Annotated[
    str,
    msgspec.Meta(
        pattern=CODE_PATTERN,
        description="A code (1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit).",
        examples=["ZA-WC"],
    ),
]
Codes = Annotated[list[Code], msgspec.Meta(max_length=50, description="At most 50 codes.")]
Permille = Annotated[int, PERMILLE]
Weight = Annotated[int, integer_range(0, 1000)]
Currency = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["ZAR"])
]
Notes = Annotated[str, msgspec.Meta(max_length=4000, pattern=NO_NUL)]
LawfulBasis = Literal["consent", "contract", "legitimate_interest"]


class Company(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="The company's name.")]
    domain: Annotated[
        str,
        msgspec.Meta(
            max_length=253,
            pattern=DOMAIN_PATTERN,
            description="Its web domain (a scheme, `www.` and a trailing slash are ignored):"
            " conflicts are found by it, normalised, and by the normalised name.",
            examples=["acme.example"],
        ),
    ]
    size: (
        Annotated[
            int,
            integer_range(1, 10_000_000),
            msgspec.Meta(
                description="Its number of employees (1 to 10000000), scored by the"
                " `company_size` criterion; null: not known (that criterion's value is 0)."
            ),
        ]
        | None
    ) = msgspec.field(default=None)
    industry: Code | None = None


class LeadContact(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="Who to talk to.")]
    email: Email | None = None
    phone: Phone | None = None
    title: (
        Annotated[
            Text200,
            msgspec.Meta(
                description="The contact's job title (up to 200 characters); null: not given."
            ),
        ]
        | None
    ) = None


class LeadRegistration(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A lead or deal a partner registers: kept (``shared`` false, a deal
    registration) or shared, to be routed to another partner."""

    reference: Reference
    shared: Annotated[
        bool,
        msgspec.Meta(description="Shared: routed to another partner, who works it; else kept."),
    ] = False
    company: Annotated[
        Company,
        msgspec.Meta(
            description="The company the lead is about: it is held by this registration for"
            " the exclusivity period (another registration of it is refused as a conflict)."
        ),
    ]
    contact: Annotated[
        LeadContact,
        msgspec.Meta(
            description="The person to talk to at the company: shown to the partner offered a"
            " shared lead only once it accepts."
        ),
    ]
    estimated_value_minor: Annotated[
        NonNegativeBigInt, msgspec.Meta(description="Estimated value, minor units of currency.")
    ]
    currency: Currency
    expected_close: Annotated[date, msgspec.Meta(description="Expected close date.")] | None = None
    notes: (
        Annotated[
            Notes,
            msgspec.Meta(
                description="Free text for the registrant and the operator (up to 4000"
                " characters, no NUL); never shown to the partner offered a shared lead."
            ),
        ]
        | None
    ) = None
    territory: Annotated[Code, msgspec.Meta(description="The territory (a region code).")]
    products: Annotated[
        list[Code],
        msgspec.Meta(
            min_length=1,
            max_length=50,
            description="The products concerned: a shared lead goes only to partners capable"
            " of every one.",
        ),
    ]
    lawful_basis: Annotated[
        LawfulBasis, msgspec.Meta(description="The lawful basis for sharing the contact.")
    ]
    consent_reference: (
        Annotated[Text200, msgspec.Meta(description="Where the contact's consent is recorded.")]
        | None
    ) = None
    last_activity_at: (
        Annotated[Moment, msgspec.Meta(description="The contact's last engagement (scoring).")]
        | None
    ) = None


class ExtensionRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    days: Annotated[int, integer_range(1, 365), msgspec.Meta(description="Days to add.")]
    reason: Annotated[Text500, NonEmpty, msgspec.Meta(description="Why it needs more time.")]


class ExtensionDecision(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    note: Annotated[Text500, msgspec.Meta(description="For the registrant.")] | None = None


class Decline(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[Text500, NonEmpty, msgspec.Meta(description="Why it declines (kept).")]


class StatusReport(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    status: Annotated[
        Literal["contacted", "qualified", "won", "lost"],
        msgspec.Meta(description="Where the lead stands: contacted, qualified, won, lost."),
    ]
    won_amount_minor: (
        Annotated[
            NonNegativeBigInt,
            msgspec.Meta(description="Won: its amount, in minor units of the lead's currency."),
        ]
        | None
    ) = None
    lost_reason: Annotated[Text500, NonEmpty, msgspec.Meta(description="Lost: why.")] | None = None


class SizeBand(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    min_employees: Annotated[
        int,
        integer_range(1, 10_000_000),
        msgspec.Meta(
            description="The band's lower bound: a company of at least this many employees"
            " reaches it (the highest value among the bands reached counts)."
        ),
    ]
    value: Annotated[
        Permille,
        msgspec.Meta(description="The criterion's value (0 to 1000) for a company in the band."),
    ]


class Criterion(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One criterion of lead scoring: its value (0-1000) times its weight."""

    name: Annotated[
        Literal["company_size", "industry", "territory", "recent_activity"],
        msgspec.Meta(
            description="company_size (by `bands`), industry and territory (by `values`),"
            " recent_activity (1000 at the moment, falling to 0 at `within_days`)."
        ),
    ]
    weight: Annotated[int, integer_range(1, 1000), msgspec.Meta(description="Its weight.")]
    bands: (
        Annotated[
            list[SizeBand],
            msgspec.Meta(
                max_length=20,
                description="company_size only (required there, null otherwise): up to 20"
                " bands of employees; a company of unknown size, or below every band, has"
                " the value 0.",
            ),
        ]
        | None
    ) = None
    values: (
        Annotated[
            dict[Code, Permille],
            msgspec.Meta(
                max_length=200,
                description="industry and territory only (required there, null otherwise):"
                " industry or territory code -> value (0 to 1000), up to 200; a code not"
                " listed has the value 0.",
            ),
        ]
        | None
    ) = None
    within_days: (
        Annotated[
            int,
            integer_range(1, 3650),
            msgspec.Meta(
                description="recent_activity only (required there, null otherwise): days"
                " (1 to 3650) after the contact's last engagement at which the value has"
                " fallen linearly from 1000 to 0; no engagement given: 0.",
            ),
        ]
        | None
    ) = None


class ScoringCriteria(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A new version of the program's lead scoring: it scores the leads
    registered from now on (earlier leads keep the version they were scored by)."""

    criteria: Annotated[
        list[Criterion],
        msgspec.Meta(
            min_length=1,
            max_length=4,
            description="1 to 4 criteria, each name at most once: the score is the sum of"
            " weight times value divided by the sum of weights (0 to 1000, rounded down).",
        ),
    ]


_WEIGHT = " (0 to 1000; 0 is refused at save)."


class RoutingWeights(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    territory: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the territory score: 1000 if the partner covers the lead's"
            " territory, else 0" + _WEIGHT
        ),
    ]
    capability: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the capability score: 1000 for every candidate (a partner"
            " without every product of the lead is excluded)" + _WEIGHT
        ),
    ]
    tier: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the tier score: the grade of the partner's tier"
            " (`tier_grades`), or `untiered_grade`" + _WEIGHT
        ),
    ]
    capacity: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the capacity score: 1000 times the partner's free capacity"
            " (capacity minus open leads) over its capacity" + _WEIGHT
        ),
    ]
    acceptance_rate: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the acceptance-rate score: 1000 times offers accepted over"
            " offers answered or withdrawn; 500 before the first" + _WEIGHT
        ),
    ]
    response_time: Annotated[
        Weight,
        msgspec.Meta(
            description="Weight of the response-time score: 1000 for instant answers, falling"
            " to 0 as the average answer takes the whole offer SLA; 500 before the first"
            " answer" + _WEIGHT
        ),
    ]


class RoutingConfiguration(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How shared leads are routed: a partner's total is the sum of weight
    times score (0-1000) over the criteria. Refused at save if it would make
    a partner unreachable by accident (a weight of 0, a tier with no grade)."""

    weights: Annotated[
        RoutingWeights,
        msgspec.Meta(description="The weight of each routing criterion in a partner's total."),
    ]
    tier_grades: Annotated[
        dict[Code, Permille],
        msgspec.Meta(
            max_length=100,
            description="Tier code -> grade (1-1000); every tier of the program's partners"
            " needs one.",
        ),
    ]
    untiered_grade: Annotated[Permille, msgspec.Meta(description="Grade of untiered partners.")]
    offer_sla_seconds: Annotated[
        int,
        integer_range(60, 30 * 86400),
        msgspec.Meta(description="Seconds an offer waits for its answer before it moves on."),
    ]
    exclusivity_days: Annotated[
        int,
        integer_range(1, 3650),
        msgspec.Meta(description="How long a new registration holds its company."),
    ]


class ReferralTerms(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the partner that shared a lead earns when it is won."""

    reward: Annotated[
        Literal["points", "money"],
        msgspec.Meta(
            description="points: points credited to the referrer's account; money: an amount"
            " owed to the referrer (its payable on the money ledger)."
        ),
    ]
    basis: Annotated[
        Literal["fixed", "share"],
        msgspec.Meta(description="fixed: `amount`; share (money only): `share_bps` of the won"),
    ]
    amount: Annotated[
        NonNegativeBigInt, msgspec.Meta(description="Points, or minor units, of a fixed reward.")
    ] = 0
    share_bps: Annotated[
        int,
        integer_range(0, 10_000),
        msgspec.Meta(
            description="basis share: the referrer's share of the won amount, in basis points"
            " (1 to 10000; 10000 is all of it), paid in the lead's currency; ignored with fixed."
        ),
    ] = 0
    currency: Currency | None = None


class PartnerProfile(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What routing knows of a partner: where and what it sells, and how
    many leads it takes at once."""

    territories: Codes
    capabilities: Codes
    capacity: Annotated[
        int,
        integer_range(1, 100_000),
        msgspec.Meta(
            description="How many shared leads it holds at once, offered or accepted (1 to"
            " 100000): with as many open it is excluded from routing (at capacity)."
        ),
    ]


class Contribution(msgspec.Struct, kw_only=True, frozen=True):
    criterion: Annotated[
        str,
        msgspec.Meta(
            description="The scoring criterion: company_size, industry, territory or"
            " recent_activity."
        ),
    ]
    weight: Annotated[int, msgspec.Meta(description="The criterion's weight (1 to 1000).")]
    value: Annotated[int, msgspec.Meta(description="The criterion's value, 0-1000.")]
    contribution: Annotated[int, msgspec.Meta(description="weight times value.")]


class LeadView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The lead's id.")]
    reference: Annotated[
        str, msgspec.Meta(description="The registrant's id of the registration, as sent.")
    ]
    shared: Annotated[
        bool,
        msgspec.Meta(
            description="True: shared, routed to another partner; false: kept by the registrant."
        ),
    ]
    company: Annotated[Company, msgspec.Meta(description="The company, as registered.")]
    contact: Annotated[LeadContact, msgspec.Meta(description="The contact, as registered.")]
    estimated_value_minor: Annotated[
        int, msgspec.Meta(description="Estimated value, in minor units of `currency`.")
    ]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code of the lead's amounts.")]
    expected_close: Annotated[
        date | None,
        msgspec.Meta(description="Expected close date (ISO date); null: not given."),
    ]
    notes: Annotated[
        str | None, msgspec.Meta(description="The registrant's notes; null: none given.")
    ]
    territory: Annotated[str, msgspec.Meta(description="The territory (a region code).")]
    products: Annotated[list[str], msgspec.Meta(description="The product codes concerned.")]
    lawful_basis: Annotated[
        str,
        msgspec.Meta(
            description="The lawful basis for sharing the contact: consent, contract or"
            " legitimate_interest."
        ),
    ]
    consent_reference: Annotated[
        str | None,
        msgspec.Meta(description="Where the contact's consent is recorded; null: not given."),
    ]
    status: Annotated[
        str,
        msgspec.Meta(
            description="registered, offered, accepted, contacted, qualified, won, lost,"
            " unrouted (no eligible partner left) or expired."
        ),
    ]
    exclusive_until: Annotated[
        datetime,
        msgspec.Meta(
            description="When the registration's hold on its company ends (UTC), extensions"
            " included: unworked to a close by then, the lead expires."
        ),
    ]
    score: Annotated[int, msgspec.Meta(description="0-1000: sum of contributions / weights.")]
    scoring_version: Annotated[int | None, msgspec.Meta(description="None: no criteria yet.")]
    score_details: Annotated[
        list[Contribution],
        msgspec.Meta(
            description="How the score was reached, one per criterion of the scoring version;"
            " empty: no criteria yet."
        ),
    ]
    won_amount_minor: Annotated[
        int | None,
        msgspec.Meta(description="Won: its amount, in minor units of `currency`; else null."),
    ]
    lost_reason: Annotated[str | None, msgspec.Meta(description="Lost: why; else null.")]
    reward: Annotated[
        dict[str, object] | None,
        msgspec.Meta(
            description="A shared lead won: the referral reward earned by the registrant,"
            " `reward` (points or money), `amount` (points, or minor units of `currency`),"
            " `currency` (null for points) and `transfer_id` (the ledger transfer); null:"
            " not won, kept, or no reward under the program's referral terms."
        ),
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True: the answer to an earlier identical request (nothing new was done)."
        ),
    ] = False


class LeadList(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[LeadView],
        msgspec.Meta(description="The partner's leads, up to `limit`, newest first."),
    ]


class OfferView(msgspec.Struct, kw_only=True, frozen=True):
    """An offer of a shared lead, as the partner offered it sees it (never
    who shared it)."""

    id: Annotated[str, msgspec.Meta(description="The offer's id.")]
    lead_id: Annotated[str, msgspec.Meta(description="The id of the lead offered.")]
    status: Annotated[str, msgspec.Meta(description="offered, accepted, declined, withdrawn.")]
    offered_at: Annotated[datetime, msgspec.Meta(description="When it was offered (UTC).")]
    due_at: Annotated[
        datetime,
        msgspec.Meta(
            description="When it is withdrawn if unanswered (UTC), the lead then offered to"
            " the next candidate: `offered_at` plus the offer SLA."
        ),
    ]
    answered_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description="When it was accepted, declined or withdrawn (UTC); null: still open."
        ),
    ]
    decline_reason: Annotated[
        str | None, msgspec.Meta(description="Declined: the partner's reason; else null.")
    ]
    company: Annotated[Company, msgspec.Meta(description="The company the lead is about.")]
    contact: Annotated[
        LeadContact | None,
        msgspec.Meta(description="The contact: given once the offer is accepted, else null."),
    ]
    estimated_value_minor: Annotated[
        int, msgspec.Meta(description="Estimated value, in minor units of `currency`.")
    ]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code of the lead's amounts.")]
    territory: Annotated[str, msgspec.Meta(description="The lead's territory (a region code).")]
    products: Annotated[list[str], msgspec.Meta(description="The product codes concerned.")]
    lead_status: Annotated[
        str,
        msgspec.Meta(
            description="Accepted: the lead's status (accepted, contacted, qualified, won,"
            " lost, expired); otherwise the offer's own status."
        ),
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True: the answer to an earlier identical request (nothing new was done)."
        ),
    ] = False


class OfferList(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[OfferView], msgspec.Meta(description="Newest first.")]


class ExtensionView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The extension request's id.")]
    lead_id: Annotated[str, msgspec.Meta(description="The id of the lead to extend.")]
    days: Annotated[int, msgspec.Meta(description="Days of exclusivity asked (1 to 365).")]
    reason: Annotated[str, msgspec.Meta(description="Why the registrant needs more time.")]
    status: Annotated[str, msgspec.Meta(description="pending, approved or refused.")]
    decided_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When the operator decided (UTC); null: pending."),
    ]
    decision_note: Annotated[
        str | None,
        msgspec.Meta(description="The operator's note for the registrant; null: none."),
    ]
    exclusive_until: Annotated[
        datetime,
        msgspec.Meta(
            description="When the lead's exclusivity ends now (UTC): approval moves it by"
            " `days` from its end."
        ),
    ]


class ExtensionList(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ExtensionView], msgspec.Meta(description="Newest first.")]


class Candidate(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    partner_id: Annotated[str, msgspec.Meta(description="The partner's id.")]
    rank: Annotated[
        int,
        msgspec.Meta(
            description="Its place in the order of offers, from 1 (offered first): by total,"
            " then by `tie_rule`."
        ),
    ]
    scores: Annotated[dict[str, int], msgspec.Meta(description="Criterion -> score, 0-1000.")]
    total: Annotated[int, msgspec.Meta(description="Sum of weight times score.")]
    offer_status: Annotated[
        str | None,
        msgspec.Meta(
            description="Its offer's status: offered, accepted, declined or withdrawn; null:"
            " not offered (yet)."
        ),
    ]


class Excluded(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    partner_id: Annotated[str, msgspec.Meta(description="The partner's id.")]
    reason: Annotated[
        str,
        msgspec.Meta(
            description="Why it is no candidate: the partner that shared it, partner"
            " <status> (not active), at capacity, without the capability: <products>, or"
            " tier <tier> has no grade."
        ),
    ]


class RoutingDecisionView(msgspec.Struct, kw_only=True, frozen=True):
    lead_id: Annotated[str, msgspec.Meta(description="The id of the shared lead.")]
    routing_version: Annotated[
        int, msgspec.Meta(description="The routing configuration version it was decided by.")
    ]
    weights: Annotated[
        dict[str, int],
        msgspec.Meta(description="Criterion -> weight (0 to 1000), as used for the totals."),
    ]
    tie_rule: Annotated[
        str, msgspec.Meta(description="How candidates of equal total were ordered, in words.")
    ]
    decided_at: Annotated[datetime, msgspec.Meta(description="When it was decided (UTC).")]
    candidates: Annotated[
        list[Candidate],
        msgspec.Meta(description="The eligible partners, in rank; empty: the lead is unrouted."),
    ]
    excluded: Annotated[
        list[Excluded], msgspec.Meta(description="The partners left out, each with why.")
    ]
    excluded_counts: Annotated[
        dict[str, int],
        msgspec.Meta(description="Reason -> how many partners were left out for it."),
    ]


class ScoringVersionView(msgspec.Struct, kw_only=True, frozen=True):
    version: Annotated[int, msgspec.Meta(description="The version number, from 1, per program.")]
    criteria: Annotated[list[Criterion], msgspec.Meta(description="Its criteria, as saved.")]
    created_at: Annotated[
        datetime, msgspec.Meta(description="When it was saved (UTC), in use from then.")
    ]


class RoutingVersionView(msgspec.Struct, kw_only=True, frozen=True):
    version: Annotated[int, msgspec.Meta(description="The version number, from 1, per program.")]
    configuration: Annotated[
        RoutingConfiguration, msgspec.Meta(description="Its configuration, as saved.")
    ]
    created_at: Annotated[
        datetime, msgspec.Meta(description="When it was saved (UTC), in use from then.")
    ]


class ReferralTermsView(msgspec.Struct, kw_only=True, frozen=True):
    terms: Annotated[ReferralTerms, msgspec.Meta(description="The program's referral terms.")]
    updated_at: Annotated[
        datetime,
        msgspec.Meta(description="When they were last set (UTC): leads won from then use them."),
    ]


class ProfileView(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    profile: Annotated[
        PartnerProfile, msgspec.Meta(description="What routing knows of the partner.")
    ]
    open_leads: Annotated[
        int,
        msgspec.Meta(
            description="Shared leads it holds now: offered to it (unanswered) or accepted,"
            " not yet won, lost or expired."
        ),
    ]
    offers_accepted: Annotated[int, msgspec.Meta(description="Offers it has accepted.")]
    offers_declined: Annotated[int, msgspec.Meta(description="Offers it has declined.")]
    offers_withdrawn: Annotated[
        int, msgspec.Meta(description="Offers withdrawn from it unanswered within the SLA.")
    ]
