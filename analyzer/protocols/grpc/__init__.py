"""gRPC on HTTP/2: the length-prefixed message framing of a call's DATA payload."""
