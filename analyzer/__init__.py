"""wireprobe: what one message really costs on the wire."""

__version__ = "0.1.0"
