"""The batch command's benchmark: ``python -m app.batch`` over 10,000 photos against the in-process limit (the
service's pipeline without HTTP, as ``make bench`` measures it), alternating in one run; writes "## Batch"."""
