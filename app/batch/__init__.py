"""The batch prediction command (``python -m app.batch``, ``imgclf-batch``): the service's decode -> batch ->
predict pipeline run over a folder, a glob or a listing of images, with every row written as it is done so that a
crash loses almost nothing and ``--resume`` finishes the job. The local engine uses this machine's cores; the Ray
engine spreads the same work over a Ray cluster. See docs/batch.md.
"""
