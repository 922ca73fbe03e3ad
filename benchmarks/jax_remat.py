"""Does rematerialization shrink JAX's training step of the reference config? XLA's own buffer assignment, per mode.

    KERAS_BACKEND=jax python benchmarks/jax_remat.py                 # every mode, one interpreter each
    KERAS_BACKEND=jax python benchmarks/jax_remat.py --modes none,decoder

The performance issue asks for the reference training step (throughput.py's `reference`: ResNet-50 encoder,
512 px, 128 queries, batch 4) within 8 GB on every backend; JAX's is not (XLA assigns 6.8 GB to the step, the
process peaks above 8 GiB). Rematerialization is the usual lever. Keras' own (`keras.RematScope`, `keras.remat`)
does not trace on JAX for these layers: `jax.checkpoint` turns every argument into a tracer, `training=True`
included, and a layer's Python `if training` then fails ("Attempted boolean conversion"); and a batch
normalization inside the checkpoint would write its moving averages from inside the trace.
`checkpointed_call` below avoids both: the layer's `stateless_call` runs inside `jax.checkpoint` with the
enclosing `StatelessScope`'s values of its variables as arguments, only tensors are traced (Python values stay
static), and the new non-trainable values (moving averages) are assigned once, outside.

Modes (each compiled from scratch in its own interpreter, XLA's `memory_analysis` of the whole train step):

- `none`: the step as the package trains it;
- `encoder`: the whole image encoder (`PaddedFeatureExtractor`) checkpointed: nothing of it kept for the
  backward pass but its outputs;
- `encoder_convs` / `encoder_blocks`: the encoder checkpointed keeping only its convolutions' outputs / its
  residual additions' outputs (`jax.checkpoint_policies.save_only_these_names`);
- `decoder`: each mask cross-attention block of the query decoder checkpointed;
- `queries_32`: no rematerialization, 32 queries instead of 128 (how much of the step scales with N);
- `memory_schedule` / `memory_schedule_decoder`: `none` / `decoder` compiled with XLA:CPU's memory-optimized
  scheduler instead of its concurrency-optimized default (what `keras-openseg` does on JAX).

Prints one row per mode: XLA's temp, argument, output and peak (their sum) in MiB, and GFLOPs of the step.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODES = (
    "none",
    "encoder",
    "encoder_convs",
    "encoder_blocks",
    "decoder",
    "queries_32",
    "memory_schedule",
    "memory_schedule_decoder",
)
# Modes compiled under XLA:CPU's memory-optimized scheduler (`use_memory_optimized_xla_schedule`), and what they
# rematerialize.
SCHEDULED = {"memory_schedule": "none", "memory_schedule_decoder": "decoder"}


def checkpointed_call(layer, call, *args, policy=None, **kwargs):
    """`call(*args, **kwargs)` (the layer's own `call`) under `jax.checkpoint`, its state updates applied once."""
    import jax
    from keras.src.backend.common.stateless_scope import get_stateless_scope
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    if not in_stateless_scope():
        return call(*args, **kwargs)
    scope = get_stateless_scope()

    def current(variable):
        value = scope.get_current_value(variable)
        return variable.value if value is None else value

    trainable = [current(v) for v in layer.trainable_variables]
    non_trainable = [current(v) for v in layer.non_trainable_variables]
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    traced = [i for i, leaf in enumerate(leaves) if hasattr(leaf, "shape") and hasattr(leaf, "dtype")]

    def run(trainable, non_trainable, tensors):
        call_leaves = list(leaves)
        for index, tensor in zip(traced, tensors):
            call_leaves[index] = tensor
        call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, call_leaves)
        mapping = list(zip(layer.trainable_variables, trainable)) + list(
            zip(layer.non_trainable_variables, non_trainable)
        )
        from keras.src.backend.common.stateless_scope import StatelessScope

        with StatelessScope(state_mapping=mapping) as inner:
            outputs = call(*call_args, **call_kwargs)
        return outputs, [inner.get_current_value(v) for v in layer.non_trainable_variables]

    outputs, updated = jax.checkpoint(run, policy=policy)(trainable, non_trainable, [leaves[i] for i in traced])
    for variable, value in zip(layer.non_trainable_variables, updated):
        variable.assign(value)
    return outputs


def _name_outputs(extractor, kind):
    """Names the outputs of the encoder's `kind` layers for a save-only-these policy (its graph runs op by op)."""
    from jax.ad_checkpoint import checkpoint_name

    run_through_graph = extractor._run_through_graph

    def named_run_through_graph(inputs, operation_fn, **kwargs):
        def named_operation_fn(operation):
            run = operation_fn(operation)

            def call(*args, **call_kwargs):
                outputs = run(*args, **call_kwargs)
                return checkpoint_name(outputs, "saved") if isinstance(operation, kind) else outputs

            return call

        return run_through_graph(inputs, operation_fn=named_operation_fn, **kwargs)

    extractor._run_through_graph = named_run_through_graph


def apply_mode(model, mode):
    """Patches the model's layers (instance `call`s) for `mode`."""
    import jax
    import keras

    backbone = model.backbone
    if mode.startswith("encoder"):
        extractor = backbone.feature_extractor
        plain = extractor.call
        policy = None
        if mode != "encoder":
            _name_outputs(extractor, keras.layers.Conv2D if mode == "encoder_convs" else keras.layers.Add)
            policy = jax.checkpoint_policies.save_only_these_names("saved")

        def call(inputs, padding_mask=None, training=None, mask=None):
            if not training:
                return plain(inputs, padding_mask=padding_mask, training=training, mask=mask)
            return checkpointed_call(
                extractor, plain, inputs, padding_mask=padding_mask, training=training, mask=mask, policy=policy
            )

        extractor.call = call
    elif mode == "decoder":
        for block in backbone.mask_decoder.blocks:
            plain = block.call

            def call(queries, features, key_valid=None, training=None, block=block, plain=plain):
                if not training:
                    return plain(queries, features, key_valid=key_valid, training=training)
                return checkpointed_call(block, plain, queries, features, key_valid=key_valid, training=training)

            block.call = call


def measure(mode):
    """Runs in a JAX interpreter: XLA's analysis of one compiled training step of the reference config."""
    from keras_openseg.training.host_memory import use_memory_optimized_xla_schedule

    if mode in SCHEDULED and not use_memory_optimized_xla_schedule():  # before anything computes
        raise RuntimeError(f"{mode}: XLA_FLAGS already choose a scheduler, or jaxlib is not 0.10")
    import keras
    import throughput
    from _timing import jax_train_step_analysis

    config = dict(throughput.CONFIGS["reference"])
    if mode == "queries_32":
        config["num_queries"] = 32
    keras.utils.set_random_seed(0)
    model, _, _ = throughput.build_models(config, peers=False)
    apply_mode(model, SCHEDULED.get(mode, mode))
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=True)
    _, x_small, y_small = throughput.make_batch(dict(config, image_size=64))
    keras.Model.train_on_batch(model, x_small, y_small)  # builds the optimizer: the variables do not depend on size
    _, x, y = throughput.make_batch(config)
    analysis = jax_train_step_analysis(model, x, y)
    return {
        "mode": mode,
        "num_queries": config["num_queries"],
        **{key.replace("_bytes", "_mib"): value / 2**20 for key, value in analysis.items() if key.endswith("_bytes")},
        "gflops": analysis["flops"] / 1e9,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(measure(args.worker)), flush=True)
        return 0
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown --modes {unknown}; choose from {MODES}")
    rows = []
    for mode in modes:
        env = dict(os.environ, KERAS_BACKEND="jax")
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", mode], env=env, capture_output=True, text=True
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise RuntimeError(f"mode {mode} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        row = rows[-1]
        print(
            f"{mode:<15} N={row['num_queries']:<4} temp {row['temp_mib']:8.0f}  args {row['argument_mib']:6.0f}  "
            f"out {row['output_mib']:6.0f}  peak {row['peak_mib']:8.0f} MiB  {row['gflops']:7.0f} GFLOP",
            flush=True,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
