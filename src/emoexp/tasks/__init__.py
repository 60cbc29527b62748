"""Lightning task modules."""
