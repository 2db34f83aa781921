"""Export for servers (SavedModel) and devices (TFLite), each checked against Keras.

Both exporters run under the TensorFlow backend (train under any backend, save
a `.keras` file, export in a TensorFlow process). Every export is verified
before it is moved into place: the written SavedModel is loaded back and the
TFLite flatbuffer is run in `ai_edge_litert`, both on a probe batch, and their
outputs are compared with the Keras model's. Files are written to a temporary
path beside the target and renamed, so an interrupted or failed export never
leaves a half-written model where a good one was.

TFLite forms (builtin ops only, no Flex delegate; the signature is static):
  * one token per call (`steps=1`, streaming with carried state): the RNN
    layers are traced unrolled, so the step is straight-line ops that XNNPACK
    takes whole. The WHILE loop costs about 6 us more per token (10 us against
    4 us for a 1-unit LSTM) and measured 1.04x to 2.4x slower for the paper's
    373/315 LM, never faster (`benchmarks/tflite_lstm_paths.py --streaming`);
  * longer windows: Keras 3's WHILE loop, as the converter makes it;
  * full-integer int8 (`quantize="int8_full"`): always unrolled, since the
    converter's calibration crashes the process on a WHILE loop.
The fused UNIDIRECTIONAL_SEQUENCE_LSTM op comes only from a `tf_keras` LSTM (the
converter never makes it from Keras 3); it measured 1.3x to 6x slower than the
WHILE loop in `ai_edge_litert` on x86 CPUs, so it is not offered.
"""

import contextlib
import os
import tempfile
import warnings

import keras
import numpy as np

from iss_keras.files import atomic_path
from iss_keras.keras_internals import outputs_from_zero_state, rnns_unrolled, tflite_op_names
from iss_keras.rebuild import output_difference, probe_inputs
from iss_keras.startup import quietly

QUANTIZATIONS = (None, "int8", "int8_full", "float16")

# Largest relative difference |TFLite - Keras| / max(1, max|Keras|) accepted by
# default. Dynamic-range int8 quantizes every weight matrix to 8 bits, so its
# outputs move by about 1% of their range; float16 weights by about 0.05%.
# Full-integer int8 also rounds every activation to 8 bits within the ranges
# seen on the representative data (0.3% to 0.7% measured on the paper's pair).
DEFAULT_TOLERANCES = {None: 1e-4, "float16": 5e-3, "int8": 5e-2, "int8_full": 5e-2}
# Representative batches the full-integer export also verifies on (spread over the data).
REPRESENTATIVE_PROBES = 4


class ExportVerificationError(AssertionError):
    """The exported model does not reproduce the Keras model's outputs."""


class ExportReport:
    """What was written and how closely it matches Keras.

    Attributes:
        path: the exported file or directory.
        format: `"saved_model"` or `"tflite"`.
        size_bytes: size on disk.
        max_abs_diff: largest |exported - Keras| on the probe batch.
        max_rel_diff: the same divided by max(1, max|Keras output|).
        input_shapes: the signature's input shapes (None = dynamic).
        ops: sorted builtin op names (TFLite only).
        quantize: None, "int8", "int8_full" or "float16" (TFLite only).
        form: "unrolled" (straight-line steps) or "while" (TFLite only).
    """

    def __init__(self, path, format, size_bytes, max_abs_diff, max_rel_diff, input_shapes,
                 ops=None, quantize=None, form=None):
        self.path = path
        self.format = format
        self.size_bytes = int(size_bytes)
        self.max_abs_diff = float(max_abs_diff)
        self.max_rel_diff = float(max_rel_diff)
        self.input_shapes = [list(s) for s in input_shapes]
        self.ops = list(ops) if ops is not None else None
        self.quantize = quantize
        self.form = form

    def to_dict(self):
        return dict(vars(self))

    def __str__(self):
        text = (f"{self.format} {self.path}: {self.size_bytes / 1e6:.2f} MB, inputs "
                f"{self.input_shapes}, max |exported - keras| = {self.max_abs_diff:.3g}")
        if self.quantize:
            text += f" (quantize={self.quantize})"
        if self.ops is not None:
            text += "\n  ops: " + ", ".join(self.ops)
        return text


def _tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Export needs the TensorFlow backend; this process runs "
            f"KERAS_BACKEND={keras.backend.backend()!r}. Save the model with "
            "model.save('model.keras') and export it in a process started with "
            "KERAS_BACKEND=tensorflow.")
    try:
        import tensorflow as tf
    except ImportError as e:  # KERAS_BACKEND=tensorflow set without TensorFlow installed
        raise ImportError("Export needs TensorFlow: pip install 'iss_keras[export]'.") from e
    return tf


def input_shapes(model, batch_size=None, steps=None):
    """The model's input shapes with unknown batch and time sizes filled in.

    Args:
        model: a Keras model.
        batch_size: size for an unknown batch axis (None keeps it dynamic).
        steps: size for an unknown time axis (axis 1 of inputs of rank >= 2).
    """
    shapes = []
    for tensor in model.inputs:
        shape = list(tensor.shape)
        if shape and shape[0] is None:
            shape[0] = batch_size
        if len(shape) > 1 and shape[1] is None:
            shape[1] = steps
        shapes.append(shape)
    return shapes


def _signature(tf, model, shapes):
    return [tf.TensorSpec(shape, dtype=keras.backend.standardize_dtype(t.dtype), name=_name(t, i))
            for i, (t, shape) in enumerate(zip(model.inputs, shapes))]


def _name(tensor, index):
    name = getattr(tensor, "name", None) or f"input_{index}"
    return name.replace(":", "_").replace("/", "_")


def serving_output_names(model, names=None):
    """The serving signature's output names, in the order of the model's outputs.

    Args:
        model: a Keras model.
        names: explicit names (e.g. `["logits", "h0", "c0"]`); by default the
            model's `output_names`, made unique (`lstm_0`, `lstm_0_1`, ...),
            or `output_0`, `output_1`, ... for a Sequential model.
    """
    count = len(model.outputs)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != count or len(set(names)) != count:
            raise ValueError(f"output_names must be {count} distinct names, one per output of "
                             f"{model.name!r}. Received: output_names={names}")
        return names
    seen, unique = {}, []
    # A Sequential model has no output_names: its outputs stay output_0, output_1, ...
    model_names = getattr(model, "output_names", None) or [f"output_{i}" for i in range(count)]
    for name in model_names:
        name = name.replace(":", "_").replace("/", "_")
        seen[name] = seen.get(name, -1) + 1
        unique.append(name if seen[name] == 0 else f"{name}_{seen[name]}")
    return unique


def _serving_fn(model, names, unroll=False):
    def serve(*args):
        # Only this endpoint is traced unrolled; the model's own functions keep their loop.
        with rnns_unrolled(model) if unroll else contextlib.nullcontext():
            out = model(list(args) if len(args) > 1 else args[0], training=False)
        return dict(zip(names, keras.tree.flatten(out)))

    return serve


def _archive(model, shapes, endpoint="serve", names=None, unroll=False):
    tf = _tensorflow()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(endpoint, _serving_fn(model, serving_output_names(model, names), unroll),
                         input_signature=_signature(tf, model, shapes))
    return archive


def _probe(model, shapes):
    first = shapes[0] if shapes else []
    batch = first[0] if first and first[0] is not None else 2
    time = first[1] if len(first) > 1 and first[1] is not None else 7
    return probe_inputs(model, batch=batch, steps=time)




def _compare(expected, got, tolerance, what):
    if len(expected) != len(got):
        raise ExportVerificationError(f"{what} returns {len(got)} outputs, Keras {len(expected)}.")
    worst_abs = worst_rel = 0.0
    for i, (e, g) in enumerate(zip(expected, got)):
        g = np.asarray(g)
        if e.shape != g.shape:
            raise ExportVerificationError(
                f"Output {i} of the {what} has shape {g.shape}; Keras gives {e.shape}.")
        diff, rel = output_difference(e, g)
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, rel)
        if not rel <= tolerance:
            raise ExportVerificationError(
                f"Output {i} of the {what} differs from Keras by {diff:.3g} ({rel:.3g} relative), "
                f"above tolerance={tolerance}. Nothing was written. If quantization is on, a "
                "looser tolerance may be right; otherwise please report this model.")
    return worst_abs, worst_rel


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def export_saved_model(model, path, batch_size=None, steps=None, probe=None, tolerance=1e-5,
                       endpoint="serve", output_names=None):
    """Write `model` as a TensorFlow SavedModel with one serving endpoint.

    Args:
        model: a Keras model (Sequential or Functional).
        path: the SavedModel directory to create or replace.
        batch_size: fixed batch size of the signature (None: dynamic).
        steps: fixed sequence length (None: dynamic).
        probe: list of input arrays for the check (random ones if None).
        tolerance: largest relative output difference accepted.
        endpoint: name of the serving function.
        output_names: names of the signature's outputs (default: the model's
            output names, made unique); inputs are named after `model.inputs`.

    Returns:
        An `ExportReport`.

    Raises:
        ExportVerificationError: the reloaded SavedModel's outputs differ; the
            previous contents of `path` are left as they were.
        FileExistsError: `path` exists and is not a SavedModel directory
            (nothing else is ever replaced).

    Example:

    >>> report = iss_keras.export_saved_model(small, "runs/ptb/saved_model")
    >>> served = tf.saved_model.load("runs/ptb/saved_model").serve(tokens)
    """
    tf = _tensorflow()
    _refuse_to_replace_other_things(path)
    shapes = input_shapes(model, batch_size, steps)
    names = serving_output_names(model, output_names)
    archive = _archive(model, shapes, endpoint, names)
    inputs = probe if probe is not None else _probe(model, shapes)
    expected = outputs_from_zero_state(model, inputs)
    with atomic_path(path, directory=True) as tmp:
        archive.write_out(tmp, verbose=False)
        loaded = tf.saved_model.load(tmp)  # keep a reference: it owns the variables
        served = getattr(loaded, endpoint)(*[tf.constant(x) for x in inputs])
        got = [np.asarray(served[name]) for name in names]
        worst_abs, worst_rel = _compare(expected, got, tolerance, "reloaded SavedModel")
    return ExportReport(os.path.abspath(path), "saved_model", _size(path), worst_abs, worst_rel,
                        shapes)


def _refuse_to_replace_other_things(path):
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path) and (
            not os.listdir(path) or os.path.isfile(os.path.join(path, "saved_model.pb"))):
        return  # a previous export (or an empty directory): replaced atomically
    raise FileExistsError(
        f"{path!r} exists and is not a SavedModel directory; export_saved_model replaces only "
        "a previous export. Choose another path or remove it first.")


def tflite_interpreter(model_content=None, model_path=None, num_threads=None, delegates=True):
    """An `ai_edge_litert` interpreter with tensors allocated.

    Args:
        delegates: keep the default XNNPACK delegate (the fast CPU path).
    """
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError as e:
        raise ImportError("Running TFLite models needs LiteRT: pip install "
                          "'iss_keras[export]' (ai-edge-litert).") from e

    kwargs = {}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = \
            litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with quietly():  # LiteRT's C++ "Created TensorFlow Lite XNNPACK delegate" line
        interp = litert.Interpreter(model_content=model_content, model_path=model_path,
                                    num_threads=num_threads, **kwargs)
        interp.allocate_tensors()
    return interp


def tflite_ops(model_content):
    """Sorted names of the operators in a TFLite flatbuffer (before delegation)."""
    interp = tflite_interpreter(model_content=model_content, delegates=False)
    return sorted(set(tflite_op_names(interp)))


def input_names(model):
    """The signature's input names, in the order of `model.inputs`."""
    return [_name(t, i) for i, t in enumerate(model.inputs)]


def run_tflite(interp, inputs, names, outputs=None):
    """Run an interpreter's signature on arrays given in the order of `names`.

    Returns the outputs in the order of `outputs` (the signature's output
    names, see `serving_output_names`), or for unnamed `output_N` outputs in N order.
    """
    runner = interp.get_signature_runner()
    out = runner(**{n: np.asarray(x) for n, x in zip(names, inputs)})
    if outputs is None:
        if not all(k.startswith("output_") and k[7:].isdigit() for k in out):
            raise ValueError(f"The signature's outputs are named {sorted(out)}; pass "
                             "outputs=serving_output_names(model) (or the names used at "
                             "export) to get them in the model's order.")
        outputs = sorted(out, key=lambda k: int(k[7:]))
    return [out[name] for name in outputs]


def tflite_form(shapes, quantize=None):
    """`"unrolled"` or `"while"`: how `convert_to_tflite` writes the RNNs for these input shapes.

    Unrolled for one step per call (the first input's time axis is 1) and for
    full-integer int8; a WHILE loop otherwise (see the module docstring for why).
    """
    first = shapes[0] if shapes else []
    return "unrolled" if quantize == "int8_full" or first[1:2] == [1] else "while"


def representative_batches(model, data, shapes):
    """`data` (an iterable of input batches) as a list of lists of arrays, checked.

    Each batch is a list of arrays in the order of `model.inputs` (or one array
    for a one-input model) with exactly the export's shapes `shapes`.

    Raises:
        ValueError: `data` is None or empty, or a batch has the wrong number of
            inputs or a wrong shape; the message names the batch and the fix.
    """
    fix = ("representative_data= is an iterable of input batches with the export's shapes "
           f"{shapes} (batch_size=, steps=), e.g. 200 training windows of a language model "
           "fed one token at a time with their carried states")
    if data is None:
        raise ValueError(f"quantize='int8_full' needs representative_data: {fix}.")
    names = input_names(model)
    batches = []
    for i, batch in enumerate(data):
        arrays = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        if len(arrays) != len(shapes):
            raise ValueError(f"Representative batch {i} has {len(arrays)} inputs; {model.name!r} "
                             f"takes {len(shapes)} ({names}). {fix}.")
        cast = []
        for name, x, shape, tensor in zip(names, arrays, shapes, model.inputs):
            x = np.asarray(x)
            if list(x.shape) != list(shape):
                raise ValueError(f"Representative batch {i}: input {name!r} has shape "
                                 f"{list(x.shape)}; the export's signature is {list(shape)}. "
                                 f"{fix}.")
            cast.append(x.astype(keras.backend.standardize_dtype(tensor.dtype)))
        batches.append(cast)
    if not batches:
        raise ValueError(f"representative_data is empty: {fix}.")
    return batches


def convert_to_tflite(model, batch_size=1, steps=None, quantize=None, output_names=None,
                      representative_data=None, form=None):
    """Convert `model` to a TFLite flatbuffer of builtin ops; see `export_tflite`.

    `form` ("unrolled" or "while") overrides `tflite_form`'s choice (the
    benchmarks compare the two). Returns `(flatbuffer bytes, input shapes)`.
    """
    tf = _tensorflow()
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    if representative_data is not None and quantize != "int8_full":
        raise ValueError("representative_data calibrates quantize='int8_full' only. Received: "
                         f"quantize={quantize!r}")
    shapes = input_shapes(model, batch_size, steps)
    for shape in shapes:
        if any(d is None for d in shape):
            raise ValueError(
                f"TFLite with builtin ops needs a static input shape; {model.name!r} has input "
                f"shape {shape}. Pass batch_size= and steps= (e.g. steps=1 for streaming "
                "one token at a time with carried state).")
    if form not in (None, "unrolled", "while"):
        raise ValueError(f"form must be None, 'unrolled' or 'while'. Received: form={form!r}")
    if quantize == "int8_full":
        if form == "while":
            raise ValueError("quantize='int8_full' needs form='unrolled' (or None): the "
                             "converter's calibration crashes the process on a WHILE loop.")
        representative_data = representative_batches(model, representative_data, shapes)
    unroll = (form or tflite_form(shapes, quantize)) == "unrolled"
    with tempfile.TemporaryDirectory(prefix="iss_keras-tflite-") as tmp:
        _archive(model, shapes, names=output_names, unroll=unroll).write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8_full":  # int8 kernels for every op; float inputs and outputs
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            names = input_names(model)
            converter.representative_dataset = lambda: (
                dict(zip(names, batch)) for batch in representative_data)
        if quantize != "int8_full":
            return converter.convert(), shapes
        # The calibrator logs from C++ and runs TensorFlow's own (deprecated) interpreter;
        # its errors still come back as exceptions.
        with quietly(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            return converter.convert(), shapes


def export_tflite(model, path, batch_size=1, steps=None, quantize=None, probe=None,
                  tolerance=None, output_names=None, representative_data=None):
    """Write `model` as a TFLite flatbuffer of builtin ops only (no Flex delegate).

    The converted model is run in `ai_edge_litert` on a probe batch and compared
    with Keras before it is written.

    Args:
        model: a Keras model.
        path: the `.tflite` file to create or replace.
        batch_size: batch size of the static signature.
        steps: sequence length of the static signature (required if the model's
            time axis is unknown). With `steps=1` the RNNs are unrolled: one
            straight-line step per call (`tflite_form`).
        quantize: None, `"int8"` (dynamic-range: int8 weights, float
            activations), `"int8_full"` (int8 weights and activations,
            calibrated on `representative_data`; float inputs and outputs) or
            `"float16"` (float16 weights).
        probe: list of input arrays for the check (random ones if None; for
            `"int8_full"`, `REPRESENTATIVE_PROBES` of the representative
            batches, whose states lie in the calibrated ranges).
        tolerance: largest relative output difference accepted (default from
            `DEFAULT_TOLERANCES` by `quantize`).
        output_names: names of the signature's outputs (see `export_saved_model`).
        representative_data: for `quantize="int8_full"` only: an iterable of
            input batches with the signature's shapes (see `representative_batches`),
            e.g. 200 training windows of a language model.

    Returns:
        An `ExportReport` with the op list, form, file size and measured difference.

    Raises:
        ExportVerificationError: the TFLite outputs differ by more than
            `tolerance`; nothing is written.
        ValueError: `representative_data` is missing, empty or of the wrong
            shape; nothing is written.

    Example:

    >>> report = iss_keras.export_tflite(small, "runs/ptb/model.tflite", steps=35)
    >>> print(report)
    """
    names = serving_output_names(model, output_names)
    shapes = input_shapes(model, batch_size, steps)
    if quantize == "int8_full":  # listed here: the probes are taken from it
        representative_data = representative_batches(model, representative_data, shapes)
    blob, shapes = convert_to_tflite(model, batch_size, steps, quantize, names,
                                     representative_data)
    tolerance = DEFAULT_TOLERANCES[quantize] if tolerance is None else tolerance
    if probe is not None:
        probes = [probe]
    elif quantize == "int8_full":
        spread = np.linspace(0, len(representative_data) - 1, REPRESENTATIVE_PROBES)
        probes = [representative_data[i] for i in sorted(set(spread.round().astype(int)))]
    else:
        probes = [_probe(model, shapes)]
    interp = tflite_interpreter(model_content=blob)
    worst_abs = worst_rel = 0.0
    for inputs in probes:
        expected = outputs_from_zero_state(model, inputs)
        got = run_tflite(interp, inputs, input_names(model), names)
        diff, rel = _compare(expected, got, tolerance, "TFLite model")
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, rel)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)
    return ExportReport(os.path.abspath(path), "tflite", len(blob), worst_abs, worst_rel, shapes,
                        ops=tflite_ops(blob), quantize=quantize, form=tflite_form(shapes, quantize))
