"""IFRS 15 / ASC 606 revenue deferral of the points granted with sales and
sold to partners: allocation by relative stand-alone selling price
(``allocation``), breakage per cohort from the program's own redemption
curves (``breakage``), recognition as points are redeemed with a cumulative
catch-up (``recognition``), the split of partners' issuance fees
(``partner_fees``), and the period's run that stores each of them
(``runs``). The arithmetic modules are pure: no I/O, ``Decimal`` only."""
