"""accounting: see docs/DESIGN.md section 6."""
