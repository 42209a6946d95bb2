"""Local HTTP servers that implement the channels' API contracts, signatures included."""
