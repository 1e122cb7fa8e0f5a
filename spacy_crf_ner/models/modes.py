"""The modes of the CRF tagger: how it is trained and how it decodes (torch-free).

* ``joint``: negative log-likelihood of the gold tag sequence under the CRF; Viterbi decoding.
* ``marginal``: loss on the CRF's per-token marginals; Viterbi decoding.
* ``independent``: a per-token softmax without transitions; argmax decoding.

Below both the Thinc builder (:mod:`.crf_tagger`) and the torch module
(:mod:`.pytorch_emission_head`), which read it.
"""
MODES = ("joint", "marginal", "independent")
