"""Training loops (one per stage) and the functions they share."""
