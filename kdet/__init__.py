"""kdet."""
