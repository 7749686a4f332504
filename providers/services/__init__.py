"""The providers service layer: what every spoke calls."""
