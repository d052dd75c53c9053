"""kdet.bounding_box."""
