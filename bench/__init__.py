"""Load, fault and benchmark scripts (not part of the package)."""
