"""Lead sharing and deal registration: partners register leads and deals
(``registration``), which are scored (``scoring``), routed to ranked
partners (``routing``), offered under an acceptance SLA (``offers``), and
whose outcome flows back to the partner that shared them, with its
referral reward (``outcomes``)."""
