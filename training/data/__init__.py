"""The data a run reads, in the order a run meets it: ``folders`` (scan and check an ImageFolder tree),
``splits`` (training / validation / test samples), ``transforms`` (evaluation transform, augmentation presets),
``datasets`` (decoding as the service does), ``samplers`` (unbalanced classes) and ``loaders``.

Import from the modules themselves; this package re-exports nothing, so each name has one home.
"""
