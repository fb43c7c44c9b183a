"""Application decoders, one module per protocol, dispatched by name (STYLE.md habit 6)."""
