"""Classification zoo entries (concat, gated, cross-attention, late fusion, unimodal baselines)."""
