"""kdet.data."""
