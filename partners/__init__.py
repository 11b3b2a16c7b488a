"""Partner organisations and the coalition (arrives with the partners issue)."""
