"""Analytics for the program's operator: member value, redemption curves
per cohort (the ones breakage estimates from), program and campaign ROI,
partner profitability. Reads only: nothing here writes."""
