"""protocols.http1: see docs/DESIGN.md section 6."""
