"""The transformer side, for spacy-transformers' ``transformer`` component: which model a
config names (``name``), windows counted in word pieces (``windows``), and the
``WindowedTransformerModel`` that feeds the model one tokenization per document
(``windowed_model``, ``model_class``). Importing this package needs neither torch nor
spacy-transformers."""
