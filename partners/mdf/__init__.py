"""Market development funds: a funder (the operator, or a brand partner)
allocates a fund to a partner for a period, in points or money; the partner
requests activities against it, the funder approves or refuses them, and
the partner claims what it spent with proof, in one or several claims; an
approved claim is paid through the ledger, once. See docs/mdf.md."""
