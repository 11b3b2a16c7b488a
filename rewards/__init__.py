"""Programs, members, earn and redeem rules (arrives with the rewards issue)."""
