"""The transformer side, for spacy-transformers' ``transformer`` component. Importing this
package needs neither torch nor spacy-transformers.

Imports go one way, from who builds to who holds to what both use:

* builders: ``listeners`` (the standalone token-to-vector layer, and what
  ``replace_listeners`` writes) -> ``windowed_model`` (``WindowedTransformerModel.v1``);
* the holder: ``model_class`` (``WindowedTransformerModel``: the forward, the precision it
  predicts at, ``set_precision`` over a pipeline);
* below them: ``precision`` (which precision, from the processor's flags, and the
  reduced-precision copies), ``encoding`` (documents to windows of word pieces),
  ``windows`` (window layout, also a span getter), ``listener_config`` (config only),
  ``fast_dropout``, ``name`` (which model a config names).
"""
