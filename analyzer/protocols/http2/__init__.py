"""protocols.http2: see docs/DESIGN.md section 6."""
