"""protocols.amqp: see docs/DESIGN.md section 6."""
