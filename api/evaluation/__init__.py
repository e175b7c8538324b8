"""``kb eval``: the whole assistant evaluated the way users judge it, against a plain RAG baseline.

Not fine-tuning (the adapter gate of ``kb train`` is :mod:`finetune.gate`). Modules:
:mod:`api.evaluation.assistant` (questions file → answers → scored records and metrics → report
folder), :mod:`api.evaluation.metrics` (the pure metric functions), :mod:`api.evaluation.report` (the
offline HTML report), :mod:`api.evaluation.baseline` (naive retrieve-then-generate).
"""
