"""int8 bundles: ONNX Runtime static quantisation of a bundle's graph, checked against fp32 (issue 17).

Public: ``core.quantize_bundle`` (labelled data: fit's export, ``python -m training quantize``),
``core.quantize_unlabelled`` (the embedded ImageNet model), ``command.add_quantize_parser``.
"""
