"""Loyalty rewards: earn rules, purchases, tiers, events, the catalog, holds and expiry."""
