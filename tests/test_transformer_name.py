"""Resolving the transformer named in a config: folder, model-shipping package, hub id."""
import sys

from spacy_crf_ner.transformer.name import resolve_transformer_name


def test_folder_and_hub_id_are_kept(tmp_path):
    assert resolve_transformer_name(str(tmp_path)) == str(tmp_path)
    assert resolve_transformer_name("camembert-base") == "camembert-base"
    assert resolve_transformer_name("org/some-model") == "org/some-model"


def test_pip_package_shipping_a_model_resolves_to_its_folder(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "my_model_pkg"
    model = pkg / "model"
    model.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (model / "config.json").write_text("{}")
    (model / "vocab.txt").write_text("[PAD]\n")
    (pkg / "1_Pooling").mkdir()
    (pkg / "1_Pooling" / "config.json").write_text("{}")  # not a model: no weights/vocab
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("my_model_pkg", None)
    assert resolve_transformer_name("my-model-pkg") == str(model)
