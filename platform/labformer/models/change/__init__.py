"""Change detection (task=change): the siamese encoder is a vision backbone from the vision registry
(shared weights for the two dates); this package holds the decoder that turns its multi-scale
features of a (before, after) pair into a per-pixel change map."""
