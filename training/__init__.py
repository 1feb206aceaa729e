"""Training and evaluation of SiameseResNet18 (identity-disjoint from the LFW test pairs)."""
