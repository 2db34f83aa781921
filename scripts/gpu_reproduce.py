"""One command for a lent GPU machine: install Keras, probe, choose what fits, train, pack.

    scripts/gpu_reproduce.sh prepare                      # here: wheels + PTB into ignored folders
    scripts/gpu_reproduce.sh run --out "$OUT"             # there: the whole flagship attempt
    scripts/gpu_reproduce.sh collect --out "$OUT"         # there, next call: wait, pack what finished

A lent machine (docs/devices.md) has Python with torch and JAX but no Keras and no
TensorFlow, no network, about 15 minutes in all and at most 10 per command. `run`:

1. installs the Keras wheel and those of its dependencies the machine lacks from `.whl/`
   (filled here by scripts/fetch_gpu_wheels.sh) into a target folder put on PYTHONPATH;
   nothing is installed where Keras already imports (the CPU rehearsal);
2. probes seconds per training step for `--probe_steps` steps under KERAS_BACKEND=torch and
   under jax, each in its own process (`probe-one`), on the medium model with ISS, printing
   which LSTM path ran (cuDNN or a loop), and keeps the faster backend; the large model is
   probed under it only where it could fit;
3. chooses (`choose`) from the measured seconds per epoch and the time left, in this order:
   `sparselarge_iss` (55 epochs); else `medium` and `medium_iss` side by side (two processes
   on the one GPU); else `medium_iss` alone; else `medium_iss` truncated to the epochs that
   fit (labelled, `--epochs` recorded in its flags.txt);
4. starts the chosen trainer(s) with `setsid` (they outlive the command, so the next call can
   collect), with `--noexport` (no TensorFlow there: shrink and verify do run);
5. waits until they finish or the command's time is up, and packs each finished run's
   record into one `<name>.tar.gz` in `--out` (`device.json` inside says where it ran, so
   `scripts/results.py keep-archive` maps the machine's paths back to relative ones here).

This module uses the standard library only: the Keras work happens in the subprocesses.
"""

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER = "ptb"
CONFIGS = {name: os.path.join("ptb", "configs", f"{name}.flags")
           for name in ("sparselarge_iss", "medium", "medium_iss")}
# What comes back of a finished run (each file if present), under <name>/ in its archive.
PACKED = ("results.json", "metrics.csv", "flags.txt", "history.json", "plan.json",
          "plots/progress.png")
MANIFEST = "device.json"  # inside each archive: where the run ran (paths to map back)
LOG = "train.log"
LOG_TAIL_BYTES = 200_000
SUMMARY = "gpu_reproduce.json"  # beside the archives: probe, choice and arithmetic


# ----------------------------------------------------------------------------- flags files

def read_flagfile(path, base=ROOT):
    """`{name: value}` of an absl flagfile (later lines win; nested --flagfile followed)."""
    values = {}
    with open(path if os.path.isabs(path) else os.path.join(base, path)) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, _, value = line[2:].partition("=")
            if name == "flagfile":
                values.update(read_flagfile(value, base))
            else:
                values[name] = value
    return values


def effective_flags(config, extra_flagfile=None):
    """The flags a run of `config` gets: its flagfile, then the rehearsal's overrides."""
    values = read_flagfile(CONFIGS[config])
    if extra_flagfile:
        values.update(read_flagfile(extra_flagfile))
    return values


def flag_arguments(config, extra_flagfile=None):
    args = [f"--flagfile={os.path.join(ROOT, CONFIGS[config])}"]
    if extra_flagfile:
        args.append(f"--flagfile={os.path.abspath(extra_flagfile)}")
    return args


# ----------------------------------------------------------------------------- install

def _distribution_name(wheel):
    return os.path.basename(wheel).split("-")[0].replace("_", "-").lower()


def _installed(name, python):
    code = (f"import importlib.metadata as m, sys\n"
            f"try: m.version({name!r})\nexcept m.PackageNotFoundError: sys.exit(1)")
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def keras_version(python, env):
    """Keras's version as `python` imports it under `env`, or None."""
    out = subprocess.run([python, "-c", "import keras; print(keras.__version__)"],
                         capture_output=True, text=True,
                         env={**env, "KERAS_BACKEND": "jax", "PYTHONPATH": env["PYTHONPATH"]})
    return out.stdout.strip() if out.returncode == 0 else None


def install(wheel_dir, target, python, env):
    """Make Keras importable: where it is not, install `wheel_dir`'s Keras wheel and the
    wheels of the packages `python` lacks into `target`, first on PYTHONPATH. Returns env."""
    found = keras_version(python, env)
    if found:
        print(f"[install] Keras {found} already imports: nothing installed.")
        return env
    wheels = sorted(os.path.join(wheel_dir, w) for w in os.listdir(wheel_dir)
                    if w.endswith(".whl")) if os.path.isdir(wheel_dir) else []
    if not any(_distribution_name(w) == "keras" for w in wheels):
        raise SystemExit(f"Keras does not import and {wheel_dir!r} holds no Keras wheel: run "
                         "scripts/fetch_gpu_wheels.sh here and carry that folder.")
    chosen = [w for w in wheels
              if _distribution_name(w) == "keras" or not _installed(_distribution_name(w), python)]
    skipped = sorted({_distribution_name(w) for w in wheels} - {_distribution_name(w) for w in chosen})
    print(f"[install] into {target}: {[os.path.basename(w) for w in chosen]}; already there: "
          f"{skipped}")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--no-cache-dir", "--upgrade", "--target", target, *chosen],
                   check=True)
    env = {**env, "PYTHONPATH": os.pathsep.join([target, env["PYTHONPATH"]])}
    found = keras_version(python, env)
    if not found:
        raise SystemExit(f"Keras still does not import after installing into {target}.")
    print(f"[install] Keras {found} imports.")
    return env


# ----------------------------------------------------------------------------- probe

def backend_available(backend, python, env):
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({backend!r}) is None)"
    return subprocess.run([python, "-c", code], env=env).returncode == 0


def probe(config, backend, args, env, python):
    """Seconds per step (and per epoch) of `config` under `backend`, in a fresh process."""
    out = os.path.join(args.state_dir, f"probe_{config}_{backend}.json")
    command = [python, os.path.join(ROOT, "scripts", "gpu_reproduce.py"), "probe-one",
               "--config", config, "--data", os.path.abspath(args.data), "--steps",
               str(args.probe_steps), "--json", out, "--state_dir", args.state_dir,
               "--finish_fixed_s", str(args.finish_fixed_s)]
    if args.extra_flagfile:
        command += ["--extra_flagfile", args.extra_flagfile]
    started = time.time()
    done = subprocess.run(command, env={**env, "KERAS_BACKEND": backend}, capture_output=True,
                          text=True, timeout=args.probe_timeout_s)
    if done.returncode != 0 or not os.path.exists(out):
        print(f"[probe] {config} under {backend} failed (exit {done.returncode}):\n"
              f"{done.stderr[-3000:]}")
        return None
    with open(out) as f:
        result = json.load(f)
    result["process_seconds"] = round(time.time() - started, 1)
    print(f"[probe] {config} under {backend}: {result['step_seconds'] * 1e3:.1f} ms/step, "
          f"{result['epoch_seconds']:.1f} s/epoch ({result['steps_per_epoch']} steps + "
          f"validation {result['valid_seconds']:.1f} s + checkpoint "
          f"{result['checkpoint_seconds']:.1f} s), start {result['startup_seconds']:.1f} s, "
          f"finish ~{result['finish_seconds']:.0f} s; LSTM path: {result['lstm_path']}")
    return result


class _Counter:
    """Calls of one function, counted (which LSTM implementation Keras ran)."""

    def __init__(self, module, name, counts, key):
        self.original = getattr(module, name)
        self.counts, self.key = counts, key
        setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        try:
            out = self.original(*args, **kwargs)
        except Exception:
            self.counts[self.key + "_raised"] = self.counts.get(self.key + "_raised", 0) + 1
            raise
        self.counts[self.key] = self.counts.get(self.key, 0) + 1
        return out


def instrument_lstm_paths(backend):
    """Count which LSTM implementation runs: Keras's `backend.lstm` (the fused one: cuDNN
    where its conditions hold) or the generic RNN loop (torch: a Python loop; JAX: lax.scan),
    and under torch whether `_cudnn_lstm` or `_fallback_lstm` did the work (Keras 3.15's
    torch `lstm` falls back silently when cuDNN raises)."""
    from keras.src import backend as keras_backend
    from keras.src.layers.rnn import rnn

    counts = {}
    _Counter(keras_backend, "lstm", counts, "fused")
    generic = rnn.RNN.inner_loop

    def counted_inner_loop(self, *args, **kwargs):
        counts["generic_loop"] = counts.get("generic_loop", 0) + 1
        return generic(self, *args, **kwargs)

    rnn.RNN.inner_loop = counted_inner_loop
    if backend == "torch":
        from keras.src.backend.torch import rnn as torch_rnn

        _Counter(torch_rnn, "_cudnn_lstm", counts, "cudnn")
        _Counter(torch_rnn, "_fallback_lstm", counts, "torch_loop")
    elif backend == "jax":
        try:
            import jax.experimental.rnn as jax_rnn

            _Counter(jax_rnn, "lstm", counts, "cudnn")
        except ImportError:
            pass
    return counts


def describe_lstm_path(backend, counts, conditions):
    """One line: which implementation ran, from the counts (not from the conditions)."""
    traced = " (times traced)" if backend == "jax" else " (calls)"
    if counts.get("cudnn"):
        path = "cuDNN" + (" (torch._VF.lstm)" if backend == "torch" else
                          " (jax.experimental.rnn)")
    elif counts.get("torch_loop"):
        path = "Keras's fused torch loop (_fallback_lstm), not cuDNN"
    elif counts.get("generic_loop"):
        path = "the generic RNN loop" + (" (lax.scan, jitted)" if backend == "jax" else "")
    else:
        path = "unknown"
    return f"{path}; counts{traced}: {counts}; cuDNN conditions: {conditions}"


def cudnn_conditions(model, backend):
    """What Keras 3.15 checks before its cuDNN LSTM, for each LSTM layer of `model`."""
    import keras

    found = {}
    if backend == "torch":
        import torch
        from keras.src.backend.torch.rnn import cudnn_ok

        found["cuda"] = bool(torch.cuda.is_available() and torch.backends.cudnn.is_available())
        found["jit_compile"] = bool(model.jit_compile)  # torch.compile would skip cuDNN
    elif backend == "jax":
        from keras.src.backend.jax.rnn import cudnn_ok

        import jax
        found["gpu"] = jax.default_backend() == "gpu"
    else:
        return found
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            cell = layer.cell
            found[layer.name] = {
                "cudnn_ok": bool(cudnn_ok(cell.activation, cell.recurrent_activation,
                                          layer.unroll, cell.use_bias)),
                "use_cudnn": layer.use_cudnn, "recurrent_dropout": cell.recurrent_dropout,
                "regularizers": sorted({type(r).__name__ for r in (
                    cell.kernel_regularizer, cell.recurrent_regularizer, cell.bias_regularizer)
                    if r is not None}),
                "constraints": sorted({type(c).__name__ for c in (
                    cell.kernel_constraint, cell.recurrent_constraint, cell.bias_constraint)
                    if c is not None})}
    return found


def probe_one(args):
    """In its own process, under $KERAS_BACKEND: build `args.config` as ptb/train.py does,
    time `args.steps` training steps (after warm-up), one validation pass, one checkpoint
    write and test calls; write the numbers as JSON."""
    import importlib.util

    process_start = time.time()
    sys.path.insert(0, ROOT)
    spec = importlib.util.spec_from_file_location("ptb_train", os.path.join(ROOT, "ptb", "train.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)  # starts the backend quietly, defines the trainer's flags
    import keras
    import numpy as np
    from absl import flags

    from iss_keras import sparsity as sparsity_lib
    from iss_keras.options import read_flags
    from iss_keras.tasks.language_model import LanguageModelConfig, every_token_perplexity, ptb_task
    from iss_keras.training import Run, RunInfo, TrainConfig, save_checkpoint
    from iss_keras.training.callbacks import StopOnNaN
    from iss_keras.training.trainer import shared_option_classes

    backend = keras.backend.backend()
    counts = instrument_lstm_paths(backend)
    workdir = os.path.join(args.state_dir, f"probe_{args.config}_{backend}")
    flags.FLAGS(["ptb/train.py", *flag_arguments(args.config, args.extra_flagfile),
                 f"--data_dir={args.data}", f"--workdir={workdir}", "--verbose=0"])
    classes = shared_option_classes() + (train.ModelConfig, LanguageModelConfig)
    options = {cls: read_flags(cls) for cls in classes}
    task = ptb_task(train.build_model)(options)
    config = options[TrainConfig]
    sparsity = sparsity_lib.from_options(
        [options[cls] for cls in sparsity_lib.option_classes()],
        sparsity_lib.OptionContext(loss_scale=task.loss_scale, epochs=config.epochs,
                                   seed=config.seed))
    run = Run(task, sparsity, config, workdir, verbose=0)
    model = run.build()
    data = task.fit_data()
    batch = data["batch_size"]
    steps_per_epoch = math.ceil(len(data["x"]) / batch)
    warmup = min(args.warmup, max(steps_per_epoch - 1, 0))
    steps = min(args.steps, steps_per_epoch - warmup)
    marks = {}

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            if step + 1 in (warmup, warmup + steps):
                # Reading the step's loss waits for the step (the update is in the same
                # program): wall time is work done, not work queued.
                [float(np.asarray(v)) for v in (logs or {}).values()]
                marks[step + 1] = time.time()

    info = RunInfo(model, run.groups, steps_per_epoch, 0, config.epochs, task.train_size())
    n = (warmup + steps) * batch
    fit_start = time.time()
    model.fit(data["x"][:n], data["y"][:n], batch_size=batch, shuffle=False, epochs=1,
              verbose=0, callbacks=[StopOnNaN(), *run.sparsity.callbacks(info), Timer()])  # the run's
    # per-step callbacks: StopOnNaN reads every step's loss, as in the real run
    marks.setdefault(0, fit_start)
    step_seconds = (marks[warmup + steps] - marks[warmup]) / steps
    first_step_done = marks[warmup] if warmup else fit_start
    train_counts = dict(counts)
    conditions = cudnn_conditions(model, backend)

    timings = []
    for _ in range(2):  # the first builds and compiles the validation copy
        started = time.time()
        task.evaluate(model)
        timings.append(time.time() - started)
    valid_seconds, valid_compile = timings[1], max(timings[0] - timings[1], 0.0)
    started = time.time()
    save_checkpoint(os.path.join(workdir, "probe_checkpoint.npz"), model, 0, [])
    checkpoint_seconds = time.time() - started
    # Finish: the test twice (sparse, shrunk); at batch 1 over every token, 20 calls timed.
    test_model = task.copy_for("test", model)
    if task.every_token_test:
        steps_per_call, calls = task.config.steps, 20
        ids = np.asarray(task.data["test"][:calls * steps_per_call + 1])
        every_token_perplexity(test_model, ids, steps_per_call)  # compiles
        started = time.time()
        every_token_perplexity(test_model, ids, steps_per_call)
        call_seconds = (time.time() - started) / calls
        test_calls = math.ceil((len(task.data["test"]) - 1) / steps_per_call)
        test_seconds = test_calls * call_seconds
    else:  # batched test (a rehearsal's tiny config): time the whole of it
        task.test(test_model)
        started = time.time()
        task.test(test_model)
        test_seconds = time.time() - started
    finish_seconds = 2 * test_seconds + args.finish_fixed_s
    epoch_seconds = steps_per_epoch * step_seconds + valid_seconds + checkpoint_seconds
    peak, total = _memory(backend)
    result = {
        "config": args.config, "backend": backend, "steps_timed": steps, "warmup_steps": warmup,
        "step_seconds": step_seconds, "steps_per_epoch": steps_per_epoch,
        "valid_seconds": valid_seconds, "checkpoint_seconds": checkpoint_seconds,
        "epoch_seconds": epoch_seconds,
        "startup_seconds": (first_step_done - process_start) + valid_compile,
        "test_seconds": test_seconds,
        "finish_seconds": finish_seconds, "epochs": config.epochs,
        "lstm_path": describe_lstm_path(backend, train_counts, conditions),
        "lstm_counts": train_counts, "cudnn": bool(train_counts.get("cudnn")),
        "cudnn_conditions": conditions, "peak_memory_bytes": peak, "device_memory_bytes": total,
        "device": _device_name(backend)}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _memory(backend):
    """(peak bytes the probe used, the device's bytes) where the backend says; else Nones."""
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return (torch.cuda.max_memory_allocated(),
                        torch.cuda.get_device_properties(0).total_memory)
        elif backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats.get("peak_bytes_in_use"), stats.get("bytes_limit")
    except Exception:  # memory statistics are a nicety; the probe's numbers stand without
        pass
    return None, None


def _device_name(backend):
    try:
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        import jax

        return str(jax.devices()[0].device_kind)
    except Exception:
        return "unknown"


# ----------------------------------------------------------------------------- choose

def run_seconds(p, epochs, slowdown=1.0):
    """Seconds a run needs: start, `epochs` epochs, finish (x `slowdown` when sharing)."""
    return p["startup_seconds"] + (epochs * p["epoch_seconds"] + p["finish_seconds"]) * slowdown


def choose(seconds_left, medium, large=None, *, large_epochs=55, medium_epochs=39,
           margin=0.15, pack_seconds=15.0, side_by_side_slowdown=1.5, side_by_side_memory=True,
           candidates=tuple(CONFIGS)):
    """What to run in `seconds_left`, in the order of preference (see the module's doc).

    Args:
        seconds_left: seconds from now until everything must be packed.
        medium: probe of `medium_iss` (`startup_seconds`, `epoch_seconds`, `finish_seconds`);
            it stands for `medium` too (the same network, without the penalty).
        large: probe of `sparselarge_iss`, or None when not probed (it cannot fit).
        margin: fraction added to every estimate.
        pack_seconds: packing the archives at the end.
        side_by_side_slowdown: how much slower each of two processes sharing the GPU runs.
        side_by_side_memory: whether two processes fit in the GPU's memory.
        candidates: the configs that may run (a branch needing another is passed over).

    Returns:
        {"branch", "runs": [{"config", "epochs", "truncated"}], "arithmetic": [lines]}.
    """
    lines = [f"time left {seconds_left:.0f} s; each estimate x{1 + margin:.2f} (margin) + "
             f"{pack_seconds:.0f} s packing"]

    def fits(label, seconds):
        need = seconds * (1 + margin) + pack_seconds
        ok = need <= seconds_left
        lines.append(f"{label}: {seconds:.0f} s -> {need:.0f} s {'<=' if ok else '>'} "
                     f"{seconds_left:.0f} s: {'fits' if ok else 'does not fit'}")
        return ok

    def formula(p, epochs, slowdown=1.0):
        share = f" x {slowdown:g} (side by side)" if slowdown != 1 else ""
        return (f"{p['startup_seconds']:.0f} start + ({epochs} x {p['epoch_seconds']:.2f} s/epoch + "
                f"{p['finish_seconds']:.0f} finish){share}")

    if "sparselarge_iss" not in candidates:
        lines.append("sparselarge_iss: not a candidate")
        large = False
    if large and fits(f"sparselarge_iss: {formula(large, large_epochs)}",
                                  run_seconds(large, large_epochs)):
        return {"branch": "sparselarge_iss", "arithmetic": lines,
                "runs": [{"config": "sparselarge_iss", "epochs": large_epochs, "truncated": False}]}
    if large is None:
        lines.append("sparselarge_iss: not probed (it cannot fit: 55 epochs of the large model "
                     "take longer than 55 of the medium one)")
    if not {"medium", "medium_iss"} <= set(candidates):
        lines.append("medium + medium_iss side by side: not both candidates")
    elif not side_by_side_memory:
        lines.append("medium + medium_iss side by side: two processes do not fit in the GPU's "
                     "memory")
    elif fits(f"medium + medium_iss side by side: "
              f"{formula(medium, medium_epochs, side_by_side_slowdown)}",
              run_seconds(medium, medium_epochs, side_by_side_slowdown)):
        return {"branch": "medium+medium_iss", "arithmetic": lines,
                "runs": [{"config": c, "epochs": medium_epochs, "truncated": False}
                         for c in ("medium", "medium_iss")]}
    if "medium_iss" not in candidates:
        lines.append("medium_iss: not a candidate")
        return {"branch": "none", "arithmetic": lines, "runs": []}
    if fits(f"medium_iss alone: {formula(medium, medium_epochs)}",
            run_seconds(medium, medium_epochs)):
        return {"branch": "medium_iss", "arithmetic": lines,
                "runs": [{"config": "medium_iss", "epochs": medium_epochs, "truncated": False}]}
    usable = (seconds_left - pack_seconds) / (1 + margin)
    epochs = int((usable - medium["startup_seconds"] - medium["finish_seconds"])
                 // medium["epoch_seconds"]) if medium["epoch_seconds"] > 0 else 0
    epochs = min(epochs, medium_epochs - 1)
    lines.append(f"medium_iss truncated: ({seconds_left:.0f} - {pack_seconds:.0f}) / "
                 f"{1 + margin:.2f} = {usable:.0f} s; minus {medium['startup_seconds']:.0f} start "
                 f"and {medium['finish_seconds']:.0f} finish, / {medium['epoch_seconds']:.2f} "
                 f"s/epoch = {max(epochs, 0)} of {medium_epochs} epochs")
    if epochs >= 1:
        return {"branch": "medium_iss_truncated", "arithmetic": lines,
                "runs": [{"config": "medium_iss", "epochs": epochs, "truncated": True}]}
    return {"branch": "none", "arithmetic": lines, "runs": []}


# ----------------------------------------------------------------------------- run and collect

def run_name(spec):
    """The run's folder and archive name: its config, `_truncated_e<N>` when cut to N epochs."""
    return (f"{spec['config']}_truncated_e{spec['epochs']}" if spec["truncated"]
            else spec["config"])


def launch(spec, args, env, python, backend, side_by_side):
    """Start one trainer in its own process session (it outlives this command)."""
    name = run_name(spec)
    workdir = os.path.join(args.state_dir, name)
    os.makedirs(workdir, exist_ok=True)
    command = [python, os.path.join(ROOT, "ptb", "train.py"),
               *flag_arguments(spec["config"], args.extra_flagfile),
               f"--data_dir={os.path.abspath(args.data)}", f"--workdir={workdir}", "--noexport",
               "--verbose=2"]
    if spec["truncated"]:
        command.append(f"--epochs={spec['epochs']}")
    job_env = {**env, "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1"}
    if side_by_side and backend == "jax":  # JAX takes 75% of the GPU at start otherwise
        job_env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = "0.45"
    rc_file = os.path.join(workdir, "exit_code")
    if os.path.exists(rc_file):
        os.remove(rc_file)
    shell = f"cd {shlex.quote(ROOT)} && {shlex.join(command)}; echo $? > {shlex.quote(rc_file)}"
    with open(os.path.join(workdir, LOG), "ab") as log:
        # start_new_session: setsid(2) in the child, so the trainer is the leader of a new
        # session (the lent machine ends the command's other processes when it returns).
        proc = subprocess.Popen(["bash", "-c", shell], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=job_env, start_new_session=True)
    print(f"[run] started {name} (pid {proc.pid}) under {backend}: {shlex.join(command)}")
    return {**spec, "name": name, "workdir": workdir, "pid": proc.pid, "backend": backend,
            "command": command, "started": time.time()}


def job_state(job):
    """(finished, exit code or None, epochs done) of a started job."""
    rc_file = os.path.join(job["workdir"], "exit_code")
    code = None
    if os.path.exists(rc_file):
        with open(rc_file) as f:
            text = f.read().strip()
        code = int(text) if text.lstrip("-").isdigit() else -1
    done = 0
    history = os.path.join(job["workdir"], "history.json")
    if os.path.exists(history):
        try:
            with open(history) as f:
                done = len(json.load(f))
        except ValueError:  # being written
            pass
    return code is not None, code, done


def pack(job, state, out_dir):
    """`out_dir/<name>.tar.gz`: the run's kept files, its log's tail and `device.json`."""
    finished, code, done = job_state(job)
    name = job["name"]
    manifest = {
        "trainer": TRAINER, "config": job["config"], "suggested_config": name,
        "epochs": job["epochs"], "recipe_epochs": state["recipe_epochs"][job["config"]],
        "truncated": job["truncated"], "epochs_done": done, "exit_code": code,
        "finished": bool(finished and code == 0
                         and os.path.exists(os.path.join(job["workdir"], "results.json"))),
        "backend": job["backend"], "side_by_side": state["choice"]["branch"] == "medium+medium_iss",
        "root": ROOT, "workdir": os.path.abspath(job["workdir"]),
        "data_dir": os.path.abspath(state["data"]), "command": job["command"],
        "probe": state.get("probes", {}).get(job["config"]),
        "choice": state["choice"], "packed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.tar.gz")
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for member in PACKED:
            source = os.path.join(job["workdir"], member)
            if os.path.isfile(source):
                tar.add(source, arcname=f"{name}/{member}")
        log = os.path.join(job["workdir"], LOG)
        if os.path.isfile(log):
            _add_bytes(tar, f"{name}/{LOG}", _tail(log, LOG_TAIL_BYTES))
        _add_bytes(tar, f"{name}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
    os.replace(tmp, path)
    return path, manifest


def _tail(path, size):
    with open(path, "rb") as f:
        f.seek(max(os.path.getsize(path) - size, 0))
        return f.read()


def _add_bytes(tar, name, data):
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


def read_archive(archive, directory):
    """Unpack a run's archive into `directory`; returns (its run folder, its manifest)."""
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")  # no absolute paths, no '..', no links out
    folders = [d for d in os.listdir(directory)
               if os.path.isfile(os.path.join(directory, d, MANIFEST))]
    if len(folders) != 1:
        raise ValueError(f"{archive!r} is not a run archive of scripts/gpu_reproduce.py: "
                         f"expected one folder holding {MANIFEST}, found {sorted(folders)}")
    run_dir = os.path.join(directory, folders[0])
    with open(os.path.join(run_dir, MANIFEST)) as f:
        return run_dir, json.load(f)


def _save_state(state):
    path = os.path.join(state["state_dir"], "state.json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def _load_state(state_dir):
    path = os.path.join(state_dir, "state.json")
    if not os.path.exists(path):
        raise SystemExit(f"No {path}: start with `scripts/gpu_reproduce.sh run` (same --state_dir).")
    with open(path) as f:
        return json.load(f)


def collect(state, out_dir, wait_seconds):
    """Wait (up to `wait_seconds`, and never past the budget's deadline) for the jobs, then
    pack every job (finished or not: an unfinished one's manifest says so) and the summary."""
    until = min(time.time() + wait_seconds, state["deadline"])
    last = None
    while True:
        states = {job["name"]: job_state(job) for job in state["jobs"]}
        line = ", ".join(f"{n}: {'exit ' + str(c) if f else f'{d} epochs done'}"
                         for n, (f, c, d) in states.items())
        if line != last:
            print(f"[collect] {time.strftime('%H:%M:%S')} {line}")
            last = line
        if all(f for f, _, _ in states.values()) or time.time() >= until:
            break
        time.sleep(min(5.0, max(until - time.time(), 0.1)))
    packed = []
    for job in state["jobs"]:
        path, manifest = pack(job, state, out_dir)
        packed.append({"archive": os.path.basename(path), "finished": manifest["finished"],
                       "epochs_done": manifest["epochs_done"], "exit_code": manifest["exit_code"]})
        print(f"[pack] {path}: finished={manifest['finished']}, {manifest['epochs_done']} of "
              f"{job['epochs']} epochs")
    summary = {key: state[key] for key in ("probes", "backend", "choice", "budget_seconds",
                                           "started_utc") if key in state}
    summary["packed"] = packed
    with open(os.path.join(out_dir, SUMMARY), "w") as f:
        json.dump(summary, f, indent=1)
    return 0 if all(p["finished"] for p in packed) else 3


def main_run(args):
    started = time.time()
    python = sys.executable
    os.makedirs(args.state_dir, exist_ok=True)
    args.state_dir = os.path.abspath(args.state_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in [ROOT, os.environ.get("PYTHONPATH", "")] if p)}
    env.pop("KERAS_BACKEND", None)
    env = install(args.wheels, args.target, python, env)
    recipe_epochs = {c: int(effective_flags(c, args.extra_flagfile).get("epochs", 0))
                     for c in CONFIGS}
    # The medium model with ISS under each backend; the faster one trains.
    probes, medium = {}, {}
    for backend in args.backends.split(","):
        if not backend_available(backend, python, env):
            print(f"[probe] {backend}: not installed here, skipped.")
            continue
        result = probe("medium_iss", backend, args, env, python)
        if result:
            medium[backend] = result
    if not medium:
        raise SystemExit(f"No backend of {args.backends} could be probed: nothing started.")
    backend = min(medium, key=lambda b: medium[b]["step_seconds"])
    if len(medium) > 1:
        other = [b for b in medium if b != backend][0]
        print(f"[probe] {backend} is faster: {medium[backend]['step_seconds'] * 1e3:.1f} vs "
              f"{medium[other]['step_seconds'] * 1e3:.1f} ms/step under {other}.")
    probes["medium_iss"] = medium[backend]
    probes["by_backend"] = {b: {k: medium[b][k] for k in ("step_seconds", "epoch_seconds",
                                                          "lstm_path", "cudnn")} for b in medium}
    if args.probe_overhead:  # ISS's cost per step: the same network without the penalty
        plain = probe("medium", backend, args, env, python)
        if plain:
            probes["iss_overhead"] = medium[backend]["step_seconds"] / plain["step_seconds"]
            print(f"[probe] ISS training overhead under {backend}: "
                  f"{probes['iss_overhead']:.3f}x the plain step "
                  f"({plain['step_seconds'] * 1e3:.2f} ms)")
    deadline = started + args.budget_s
    left = lambda: deadline - time.time()  # noqa: E731
    large = None
    # 55 large epochs take longer than 55 medium ones: probe the large model only if those fit.
    candidates = tuple(args.candidates.split(","))
    if "sparselarge_iss" in candidates and run_seconds(
            medium[backend], recipe_epochs["sparselarge_iss"]) * (1 + args.margin) \
            + args.pack_s <= left():
        large = probe("sparselarge_iss", backend, args, env, python)
        if large:
            probes["sparselarge_iss"] = large
    peak, total = medium[backend].get("peak_memory_bytes"), medium[backend].get(
        "device_memory_bytes")
    memory_ok = not (peak and total) or 2.5 * peak < total
    choice = choose(left(), medium[backend], large,
                    large_epochs=recipe_epochs["sparselarge_iss"],
                    medium_epochs=recipe_epochs["medium_iss"], margin=args.margin,
                    pack_seconds=args.pack_s, side_by_side_slowdown=args.side_by_side_slowdown,
                    side_by_side_memory=memory_ok, candidates=candidates)
    print("[choose] " + "\n[choose] ".join(choice["arithmetic"]))
    print(f"[choose] -> {choice['branch']}: "
          f"{[run_name(spec) for spec in choice['runs']] or 'nothing fits'}")
    state = {"state_dir": args.state_dir, "data": os.path.abspath(args.data), "backend": backend,
             "probes": probes, "choice": choice, "recipe_epochs": recipe_epochs,
             "budget_seconds": args.budget_s, "deadline": deadline,
             "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "jobs": []}
    side_by_side = len(choice["runs"]) > 1
    for spec in choice["runs"]:
        state["jobs"].append(launch(spec, args, env, python, backend, side_by_side))
    _save_state(state)
    if not state["jobs"]:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, SUMMARY), "w") as f:
            json.dump({k: state[k] for k in ("probes", "backend", "choice")}, f, indent=1)
        return 2
    wait = args.wait_s if args.wait_s is not None else max(args.command_s - (time.time() - started), 0)
    return collect(state, args.out, wait)


def main_collect(args):
    state = _load_state(os.path.abspath(args.state_dir))
    wait = args.wait_s if args.wait_s is not None else args.command_s
    return collect(state, args.out, wait)


def main_stop(args):
    """End the started trainers (their process groups), e.g. before giving the machine back."""
    state = _load_state(os.path.abspath(args.state_dir))
    for job in state["jobs"]:
        try:
            os.killpg(job["pid"], signal.SIGTERM)
            print(f"[stop] {job['name']} (process group {job['pid']}) ended.")
        except ProcessLookupError:
            print(f"[stop] {job['name']} had already ended.")
    return 0


def main_prepare(args):
    """Here: copy the PTB files into the folder that travels (the wheels: fetch_gpu_wheels.sh)."""
    target = os.path.join(args.data)
    os.makedirs(target, exist_ok=True)
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        shutil.copyfile(os.path.join(args.ptb_from, name), os.path.join(target, name))
    print(f"[prepare] PTB files copied from {args.ptb_from} to {target}")
    return 0


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(s):
        s.add_argument("--state_dir", default=os.path.join(ROOT, "runs", "gpu"),
                       help="workdirs, logs and state.json of the started runs")
        s.add_argument("--out", default=os.environ.get("OUT", os.path.join(ROOT, "runs", "gpu_out")),
                       help="where the archives go ($OUT on the lent machine)")
        s.add_argument("--wait_s", type=float, default=None,
                       help="seconds to wait for the runs before packing (default: what is left "
                            "of --command_s)")
        s.add_argument("--command_s", type=float, default=540,
                       help="seconds this command may take in all (a device call: 600 at most)")

    r = sub.add_parser("run", help="install, probe, choose, start, wait, pack")
    common(r)
    r.add_argument("--data", default=os.path.join(ROOT, ".gpu_data", "ptb"),
                   help="the PTB folder that travelled with the repository")
    r.add_argument("--wheels", default=os.path.join(ROOT, ".whl"))
    r.add_argument("--target", default="/tmp/iss_keras_site", help="where the wheels install")
    r.add_argument("--backends", default="torch,jax")
    r.add_argument("--candidates", default=",".join(CONFIGS),
                   help="the configs that may run (e.g. medium_iss: that one alone or truncated)")
    r.add_argument("--budget_s", type=float, default=600,
                   help="seconds from this command's start until every run must be packed")
    r.add_argument("--probe_steps", type=int, default=200)
    r.add_argument("--probe_timeout_s", type=float, default=240)
    r.add_argument("--probe_overhead", action="store_true",
                   help="also probe `medium` (no ISS) and print ISS's per-step overhead")
    r.add_argument("--margin", type=float, default=0.15, help="fraction added to each estimate")
    r.add_argument("--pack_s", type=float, default=15)
    r.add_argument("--side_by_side_slowdown", type=float, default=1.5,
                   help="assumed slowdown of each of two trainers sharing the GPU")
    r.add_argument("--finish_fixed_s", type=float, default=30,
                   help="the finish step besides its two tests: shrink, saves, plots, timing")
    r.add_argument("--extra_flagfile", default=None,
                   help="flags appended to every config (the CPU rehearsal's tiny sizes)")
    c = sub.add_parser("collect", help="wait for the started runs, pack what finished")
    common(c)
    s = sub.add_parser("stop", help="end the started runs")
    s.add_argument("--state_dir", default=os.path.join(ROOT, "runs", "gpu"))
    o = sub.add_parser("probe-one", help="(internal) time one config under $KERAS_BACKEND")
    o.add_argument("--config", required=True, choices=sorted(CONFIGS))
    o.add_argument("--data", required=True)
    o.add_argument("--steps", type=int, default=200)
    o.add_argument("--warmup", type=int, default=5)
    o.add_argument("--json", required=True)
    o.add_argument("--state_dir", required=True)
    o.add_argument("--extra_flagfile", default=None)
    o.add_argument("--finish_fixed_s", type=float, default=30)
    q = sub.add_parser("prepare", help="here: copy the PTB files into the folder that travels")
    q.add_argument("--data", default=os.path.join(ROOT, ".gpu_data", "ptb"))
    q.add_argument("--ptb_from", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "ptb"))
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    return {"run": main_run, "collect": main_collect, "stop": main_stop,
            "probe-one": probe_one, "prepare": main_prepare}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
