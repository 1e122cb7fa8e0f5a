"""Command-line interface: ``python -m spacy_crf_ner <command>``.

Each sub-command lives in its own module and registers itself on ``app``; the modules are
imported only when the CLI runs, so importing the package stays cheap.
"""
import typer

app = typer.Typer(
    name="spacy-crf-ner",
    help="BRAT standoff conversion, corpus checks, prediction and evaluation for spacy-crf-ner.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help text, as spaCy renders its own
)


def _register_commands() -> None:
    from . import convert  # noqa: F401
    from . import debug_data, evaluate, plot_log, predict  # noqa: F401


def main() -> None:
    _register_commands()
    app()
