"""The contrastive family's encoder: any family's backbone, pooled to one vector per item.

The objectives (SimSiam, MSN, InfoNCE, triplet, pair) live in `labformer.objectives`.
"""
