"""Partner firms of a coalition: issuance, acceptance, funding and settlement of points."""
