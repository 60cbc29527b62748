"""Feature extractors for text, audio and images, and the on-disk feature cache."""
