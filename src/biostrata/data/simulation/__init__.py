"""The tree simulator: random trees, sequence evolution along them, and labelled DNA datasets grown on them."""
