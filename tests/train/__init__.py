"""Training stage tests."""
