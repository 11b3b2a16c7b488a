"""Joint campaigns: partners co-run a bonus on members' purchases at their
stores, funded by the participants by their shares (``docs/campaigns.md``)."""
