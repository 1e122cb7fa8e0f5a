"""EDS-NLP 0.23 ``eds.ner_crf`` worker: ``train`` and ``infer`` (run in bench/.venvs/edsnlp).

Pipeline: ``eds.transformer`` (MiniLM, window 128 / stride 96 word pieces) -> ``eds.text_cnn``
(kernel_sizes [3]) -> ``eds.ner_crf`` (mode "joint", window 0 = Viterbi over the whole doc,
which is also what spacy-crf-ner does; EDS's default window 40 would decode in 40-word windows).
Data come from EDS-NLP's own reader, ``edsnlp.data.read_standoff`` + ``eds.standoff_dict2doc``
(spaCy's English tokenizer, so words are the same as for the spaCy systems).
Training goes through ``edsnlp.training.train`` with no validation and no checkpoint inside the
loop; the loop time is taken from the trainer's own step iterator (see ``_time_steps``).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

common.hide_other_gpus(sys.argv)

PRED_GROUP = "preds"  # every prediction, overlaps included (doc.ents drops overlaps)
GOLD_GROUP = "gold_spans"
AUTOCAST = False
PACKAGES = ["edsnlp", "torch", "transformers", "spacy", "confit", "accelerate", "tokenizers",
            common.MODEL_PACKAGE]


def build_pipeline(model_dir: str):
    import edsnlp
    import edsnlp.pipes as eds

    nlp = edsnlp.blank("en")
    nlp.add_pipe(
        eds.ner_crf(
            mode="joint",
            window=0,
            target_span_getter=GOLD_GROUP,
            span_setter={"ents": True, PRED_GROUP: True},
            infer_span_setter=False,
            embedding=eds.text_cnn(
                kernel_sizes=[3],
                embedding=eds.transformer(model=model_dir, window=128, stride=96),
            ),
        ),
        name="ner",
    )
    return nlp


def _time_steps(trainer_module, marks: list) -> None:
    """Wrap the trainer's ``trange`` so that each loop iteration records when it starts.

    ``train`` iterates ``for step in trange(max_steps + 1)``: iteration 0 starts before the
    first batch is drawn and iteration ``max_steps`` starts right after the last optimizer
    step, so ``marks[-1] - marks[0]`` is the time of exactly ``max_steps`` steps.
    """
    original = trainer_module.trange

    def trange(*args, **kwargs):
        for step in original(*args, **kwargs):
            marks.append(time.perf_counter())
            yield step

    trainer_module.trange = trange


def train(args) -> dict:
    t_start = time.perf_counter()
    import edsnlp
    import edsnlp.training.trainer as trainer_module
    from edsnlp.training import ScheduledOptimizer, TrainingData

    model_dir = common.resolve_model_dir(args.model)
    nlp = build_pipeline(model_dir)
    # EDS-NLP's reader and converter; docs are materialised once (spaCy reads its DocBin
    # the same way), then looped over and shuffled each epoch by the trainer.
    docs = list(edsnlp.data.read_standoff(
        args.data / "train", span_setter=GOLD_GROUP, tokenizer=nlp.tokenizer))
    n_gold = sum(len(doc.spans.get(GOLD_GROUP, [])) for doc in docs)
    stream = edsnlp.data.from_iterable(docs)

    transformer_lr, head_lr, warmup = 5e-5, 3e-4, 0.1
    optimizer = ScheduledOptimizer.draft(
        optim="adamw",
        groups={
            # EDS-NLP's recipe (its tutorial and its default optimizer): the transformer warms
            # up from 0 to 5e-5, the rest starts at 3e-4; both decay linearly to 0.
            "^ner[.]embedding[.]embedding[.]": {"lr": {
                "@schedules": "linear", "warmup_rate": warmup, "start_value": 0.0,
                "max_value": transformer_lr}},
            "": {"lr": {
                "@schedules": "linear", "warmup_rate": warmup, "start_value": head_lr,
                "max_value": head_lr}},
        },
    )
    marks = []
    _time_steps(trainer_module, marks)
    edsnlp.training.train(
        nlp=nlp,
        train_data=TrainingData(
            data=stream,
            # "ner_words": the spaCy words of the docs as counted by ner_crf (unambiguous;
            # "words" would match two stats keys and "tokens" counts word pieces).
            batch_size=f"{args.batch_words} ner_words",
            shuffle="dataset",
            pipe_names=["ner"],
        ),
        val_data=[],
        seed=args.seed,
        max_steps=args.steps,
        optimizer=optimizer,
        validation_interval=args.steps,
        grad_max_norm=1.0,
        num_workers=0,
        cpu=args.gpu_id < 0,
        output_dir=args.work / "train",
        save_model=False,
        logger=False,
    )
    t_saved = time.perf_counter()
    nlp.to_disk(args.work / "model")
    save_s = time.perf_counter() - t_saved
    loop_s = marks[-1] - marks[0]
    steps = len(marks) - 1
    wall_s = time.perf_counter() - t_start
    return {
        "steps": steps,
        "loop_s": round(loop_s, 2),
        "s_per_step": round(loop_s / steps, 3),
        "setup_s": round(wall_s - loop_s - save_s, 2),
        "save_s": round(save_s, 2),
        "worker_wall_s": round(wall_s, 2),
        "train_docs": len(docs),
        "train_gold_spans": n_gold,
        "batch": f"{args.batch_words} ner_words (spaCy words per batch; closed before overflow)",
        "optimizer": "AdamW (weight decay 0.01), transformer 0->5e-5, rest 3e-4, "
                     "10% warmup, linear decay to 0, global grad-norm clip 1.0",
        "versions": common.versions(PACKAGES),
        **common.torch_info(args.gpu_id),
    }


def infer(args) -> dict:
    import edsnlp

    t0 = time.perf_counter()
    nlp = edsnlp.load(args.work / "model")
    if args.gpu_id >= 0:
        nlp.to("cuda")
    load_s = time.perf_counter() - t0
    docs = common.read_split(args.data / "test")
    ids = [doc_id for doc_id, _ in docs]
    texts = [text for _, text in docs]

    def run_pass():
        # autocast=False: float32 like the spaCy systems. EDS-NLP's default (autocast=True)
        # means bfloat16 on a CPU, emulated (and ~30x slower) where the CPU has no bf16 units.
        stream = nlp.pipe(texts, batch_size=args.batch_size)
        return list(stream.set_processing(autocast=AUTOCAST))

    predicted, runs = common.timed_passes(run_pass, args.repeats)
    preds = []
    n_ents = 0
    for doc_id, doc in zip(ids, predicted):
        n_ents += len(doc.ents)
        for span in doc.spans.get(PRED_GROUP, []):
            preds.append((doc_id, span.start_char, span.end_char, span.label_))
    common.write_predictions(args.predictions, preds)
    return common.infer_summary(
        runs, args.words, len(texts), load_s=round(load_s, 2),
        predictions=len(preds), predictions_in_doc_ents=n_ents,
        prediction_source=f'doc.spans["{PRED_GROUP}"] (all spans ner_crf set)',
        batch_size=args.batch_size, autocast=AUTOCAST, **common.torch_info(args.gpu_id))


def main() -> None:
    args = common.worker_parser(__doc__).parse_args()
    if args.command == "profile":
        raise SystemExit("error: profile is implemented for spacy-crf-ner only")
    result = train(args) if args.command == "train" else infer(args)
    common.write_json(args.result, result)


if __name__ == "__main__":
    main()
