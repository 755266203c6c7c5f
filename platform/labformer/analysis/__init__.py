"""Analyses of trained checkpoints: `python -m labformer analyse <checkpoint> --attention|--atman|--pairs|--project`.

rebuild.py    task, model, weights and a fixed batch, from the checkpoint alone (pipeline.evaluate shares it)
inputs.py     what the tools share about a run: its family, tokens or patches and their names, the Job
outputs.py    the pictures, the numbers behind them and the optional W&B images
attention.py  which modules form attention probabilities, and recording them in one forward pass
graph_maps.py a graph batch's recorded attention as one matrix per layer for its first graph (nodes, then added tokens)
atman.py      AtMan: token relevance by suppressing the attention to each token
pairs.py      integrated Jacobians: a siamese encoder's similarity split over input pairs
project.py    the logit lens: hidden states and FFN neurons projected onto the vocabulary or the classes
command.py    the subcommand: ties them together and says what it wrote
"""
