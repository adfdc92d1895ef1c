"""Image-text matching zoo entries (dual_encoder, itm_matcher)."""
