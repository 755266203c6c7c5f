"""Analyses of trained checkpoints: `python -m labformer analyse <checkpoint> --attention`.

rebuild.py    task, model, weights and a fixed batch, from the checkpoint alone
attention.py  which modules form attention probabilities, and recording them in one forward pass
outputs.py    the picture, the arrays behind it and the optional W&B image
command.py    the subcommand: ties the three together and says what it wrote
"""
