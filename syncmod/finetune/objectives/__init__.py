"""Robust module-training objectives, one concept per file: `sam` (sharpness-aware minimisation), `uda`
(consistency on augmented unlabelled inputs), `soft_align` (token-align, seq-align, SRand), `scheduled_sampling`,
`debias` (product of experts, example re-weighting against a bias model). `robust.py` in finetune/ combines them."""
