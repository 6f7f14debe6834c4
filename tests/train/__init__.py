"""Training stage tests (issue 4)."""
