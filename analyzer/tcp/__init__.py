"""tcp: see docs/DESIGN.md section 6."""
