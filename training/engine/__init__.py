"""The training engine, in the order a run uses it: ``run`` (the prepared run: ``RunContext``, ``prepare_run``),
``trainer`` (phases and epochs, the best epoch, checkpoints), ``inputs`` (images or cached embeddings per phase),
``loop`` (one epoch, one evaluation, early stopping), ``optim`` (optimisers and schedules), ``transfer`` (transfer
modes: phases and stages), ``features`` (the embedding cache), ``checkpoint``, ``distributed`` (processes,
devices, precision) and ``outcome`` (what training hands back).

Import from the modules themselves; this package re-exports nothing, so each name has one home.
"""
