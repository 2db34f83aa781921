"""scripts/results.py: README result tables come from results/ files, and only finished runs are kept."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("results_script", os.path.join(ROOT, "scripts", "results.py"))
results_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_script)


def test_readme_tables_are_what_the_result_files_say():
    assert results_script.main(["table", "--check"]) == 0, "run `make results-table`"


def fake_results(**overrides):
    results = {"hidden_before": [200, 200], "hidden_after": [120, 97], "all_zero_units": [70, 90],
               "weights": 4_600_000, "weights_after": 3_100_000, "macs_per_token": 2_640_000,
               "macs_per_token_after": 1_230_000, "macs_ratio": 2_640_000 / 1_230_000,
               "valid_perplexity": 123.456, "test_perplexity_sparse": 118.765,
               "test_perplexity_shrunk": 118.7654,
               "export": {"tflite_speed": {"batch1_speedup": 1.87}},
               "run": {"machine": {"cpu": "AMD EPYC", "cores": 2, "accelerators": []},
                       "backend": "tensorflow", "date_utc": "2026-11-23T10:00:00+00:00",
                       "commit": "abcdef0123", "uncommitted_changes": False,
                       "train_seconds": 6000.0, "eval_seconds": 200.0, "finish_seconds": 100.0}}
    results.update(overrides)
    return results


def test_a_row_holds_the_files_numbers_beside_the_anchor():
    anchors = {"small": {"valid_perplexity": 121.39, "test_perplexity": 115.91, "hidden": [200, 200],
                         "source": "x"}}
    table = results_script.runs_table({"small": fake_results(), "quick_iss": fake_results()}, anchors)
    row = [line for line in table.splitlines() if line.startswith("| `small`")][0]
    for text in ("200/200 → 120/97", "130/110", "2,640,000 → 1,230,000 (2.15×)", "123.46", "118.77",
                 "1.87×", "121.39 / 115.91", "1.8 h", "2026-11-23", "`abcdef0`", "tensorflow"):
        assert text in row, text
    quick = [line for line in table.splitlines() if line.startswith("| `quick_iss`")][0]
    assert "pipeline check" in quick


def test_keep_refuses_an_unfinished_run_and_copies_a_finished_one(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(SystemExit, match="results.json"):
        results_script.keep(str(workdir), "ptb", "small")
    (workdir / "flags.txt").write_text("--hidden_sizes=200,200\n")
    (workdir / "results.json").write_text(json.dumps({"epochs": 1}))
    with pytest.raises(SystemExit, match="'run' record"):
        results_script.keep(str(workdir), "ptb", "small")
    (workdir / "results.json").write_text(json.dumps(fake_results()))
    monkeypatch.setattr(results_script, "RESULTS", str(tmp_path / "results"))
    results_script.keep(str(workdir), "ptb", "small")
    kept = tmp_path / "results" / "ptb" / "small"
    assert sorted(os.listdir(kept)) == ["flags.txt", "metrics.csv", "plots", "results.json"]
    assert json.loads((kept / "results.json").read_text())["hidden_after"] == [120, 97]


def test_missing_markers_are_named(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("# no markers here\n")
    monkeypatch.setattr(results_script, "ROOT", str(tmp_path))
    with pytest.raises(SystemExit, match=r"markers for tables \['ptb'\]"):
        results_script.render_pages({"ptb": "| x |"}, pages=("README.md",))


def test_each_table_fills_the_page_holding_its_markers(tmp_path, monkeypatch):
    marked = {name: f"{results_script.BEGIN.format(name=name)}\nold\n"
                    f"{results_script.END.format(name=name)}\n" for name in ("a", "b")}
    (tmp_path / "README.md").write_text("top\n" + marked["a"])
    (tmp_path / "sub.md").write_text(marked["b"] + "bottom\n")
    monkeypatch.setattr(results_script, "ROOT", str(tmp_path))
    pages = results_script.render_pages({"a": "| A |", "b": "| B |"},
                                        pages=("README.md", "sub.md"))
    assert "| A |" in pages["README.md"][1] and "| B |" not in pages["README.md"][1]
    assert pages["sub.md"][1].startswith(results_script.BEGIN.format(name="b") + "\n| B |\n")
    assert "old" in pages["sub.md"][0]


def test_train_overhead_table_reads_the_benchmark_json():
    spread = {"min": 0.99, "median": 1.02, "max": 1.3}
    r = {"machine": {"backend": "jax", "cpus": 2, "load_average_before": [2.5, 1, 1],
                     "load_average_after": [3.25, 1, 1]}, "date_utc": "2026-11-23",
         "tokens_per_second": {"plain": 4000.0, "iss_penalty": 3900.0},
         "step_time_ratio_vs_plain": {"plain": 1.0, "iss_penalty": 1.0256},
         "tokens_per_second_rounds": {"plain": {"min": 3500.0, "median": 4000.0, "max": 4100.0},
                                      "iss_penalty": {"min": 3000, "median": 3900, "max": 4050}},
         "round_ratio_vs_plain": {clock: {"plain": spread, "iss_penalty": spread}
                                  for clock in ("wall", "cpu")}}
    rows = results_script.train_overhead_table({"jax": r}).splitlines()[2:]
    assert len(rows) == 2 and "| plain |" in rows[0]
    for text in ("ISSRegularizer + ZeroOut", "3,900 (3,000 – 4,050)", "1.026×",
                 "0.990 / 1.020 / 1.300", "2.50 → 3.25 on 2 cores, 2026-11-23"):
        assert text in rows[1], text
    xla = {**r, "machine": {**r["machine"], "backend": "tensorflow", "xla": True}}
    rows = results_script.train_overhead_table({"tensorflow_xla": xla, "jax": r}).splitlines()
    assert rows[2].startswith("| jax | plain") and rows[4].startswith("| tensorflow + XLA | plain")


def test_bidaf_table_reads_em_f1_and_sizes():
    r = {"test_em_sparse": 6.8, "test_f1_sparse": 14.7, "test_em_shrunk": 6.8,
         "test_f1_shrunk": 14.7, "same_answers_shrunk": True, "hidden_after": [21, 21, 16, 16, 12, 12],
         "target": {"reached": {"active_units": [21, 8, 2, 16, 9, 12]}},
         "non_embedding_weights": 364335, "non_embedding_weights_after": 231607,
         "macs_per_token": 268416, "macs_per_token_after": 136064,
         "speed": {"batch1_step_seconds": {"dense": 0.0927, "shrunk": 0.0892}},
         "run": dict(fake_results()["run"], config={
             "sparsity": {"methods": [{"name": "iss", "config": {"target": {"units": None}}}]}})}
    row = results_script.bidaf_table({"quick_iss": r}).splitlines()[2]
    assert "6.80 / 14.70 (yes)" in row and "21/8, 2/16, 9/12" in row and "| 21, 16, 12 |" in row
    assert "364,335 → 231,607" in row and "(1.97×)" in row and "pipeline check" in row
    assert "| — | pipeline check" in row  # no test with zeroing: its cell says so
    r.update(test_zero_threshold=0.02, test_em_shrunk_test_zeroed=6.1,
             test_f1_shrunk_test_zeroed=13.25, hidden_after_test_zeroed=[9, 9, 4, 4, 7, 7],
             non_embedding_weights_after_test_zeroed=101234)
    row = results_script.bidaf_table({"cpu_d100_iss": r}).splitlines()[2]
    assert "| < 0.02: 6.10 / 13.25; 9, 4, 7; 101,234 | dev-article split" in row


def test_gate_neuron_rows_sit_beside_the_same_epoch_of_their_log():
    gate_neuron = {"layers": {"lstm_0": {"hidden": "250/256", "inputs": "9400/10000",
                                         "nonconstant_gates": {"i": 200, "f": 210, "c": 250,
                                                               "o": 190}}},
                   "vocabulary": {}, "weights": 13_073_168, "nonzero_weights": 400_000,
                   "compression": 32.68, "macs_per_token": 13_062_144,
                   "macs_per_token_after": 8_000_000}
    lm = fake_results(gate_neuron=gate_neuron, epochs=8, test_perplexity_shrunk=180.123,
                      run={**fake_results()["run"], "config": {"sparsity": {"methods": [
                          {"name": "sparse_vd", "config": {"levels": "W+G+N"}}]}}})
    anchors = {"word": {"config": "LLRL", "test_perplexity": 116.47, "compression": 24.46,
                        "hidden": "117/256", "gates": "201/1024", "epochs": 150,
                        "by_epoch": {"8": {"test_perplexity": 177.32, "compression": 31.22,
                                           "hidden": "252/256", "gates": "783/1024"}}}}
    table = results_script.gate_neuron_table({"word": lm, "dense": fake_results()}, anchors)
    assert "`dense`" not in table  # no gate-neuron picture, no row
    row = [line for line in table.splitlines() if line.startswith("| `word`")][0]
    for text in ("SparseVD W+G+N", "| 8 |", "250/256", "200/210/250/190", "32.7×",
                 "13,062,144 → 8,000,000", "ppl 180.12", "ppl 177.32, 31×, hidden 252/256",
                 "ppl 116.47, 24×, hidden 117/256, gates 201/1024 (LLRL, 150 epochs)"):
        assert text in row, (text, row)
    assert "gate_neuron" not in results_script.runs_table({"word": lm}, {})  # not an ISS row
    assert "`word`" not in results_script.runs_table({"word": lm}, {})


@pytest.mark.parametrize("methods, label", [
    ([], "dense"),
    ([("weight_decay", {"strength": 1e-5}), ("weight_zeroing", {"threshold": 1e-4})], "dense"),
    ([("set", {"density": 0.04, "epsilon": None})], "SET 4%"),
    ([("set", {"density": None, "epsilon": 20.0})], "SET eps 20.0"),
    ([("iss", {"target": None}), ("weight_zeroing", {"threshold": 1e-4})], "ISS"),
    ([("iss", {"target": {"units": [100, 100], "macs_ratio": None}})], "ISS → [100, 100] units"),
    ([("iss", {"target": {"units": None, "macs_ratio": 2.5}})],
     "ISS → 2.5× fewer multiply-adds"),
    ([("l1", {"strength": 1e-4}), ("sparse_vd", {"levels": "W+N"})], "l1, SparseVD W+N"),
    ([("gate_neuron", {"levels": "W+G+N"})], "pruning W+G+N"),
])
def test_each_method_names_its_runs_in_the_tables(methods, label):
    run = {"config": {"sparsity": {"methods": [{"name": n, "config": c} for n, c in methods]}}}
    assert results_script._method({"run": run}) == label


def test_deploy_speed_table_shows_each_time_with_its_ratio_and_the_goals():
    timing = {"unit": "ms per token", "ms": {"dense_float": 8.0, "dense_int8_full": 2.0,
                                             "dense_int8": 2.5, "shrunk_float": 1.0,
                                             "shrunk_int8_full": 0.1, "shrunk_int8": 0.2}}
    timing["vs_dense_float"] = {v: 8.0 / ms for v, ms in timing["ms"].items()}
    keras_timing = {"ms": {"dense_float": 14.0, "shrunk_float": 4.0},
                    "vs_dense_float": {"dense_float": 1.0, "shrunk_float": 3.5}}
    result = {"int8": "int8_full", "tflite_threads": 2, "repeats": 15,
              "run": fake_results()["run"] | {"versions": {"tensorflow": "2.21.0"}},
              "hidden_sizes": {"dense": [1500, 1500], "shrunk": [373, 315]},
              "macs_per_token": {"dense": 51_000_000, "shrunk": 6_811_396}, "macs_ratio": 7.49,
              "timings": {"tflite_batch1_stream": timing, "keras_batch1_stream": keras_timing},
              "load_before": {"load": [2.5, 2.0, 1.0]}, "load_after": {"load": [3.0, 2.0, 1.0]},
              "shared": True,
              "goals": {"shrunk_int8": {"got": 80.0, "goal": 100.0, "met": False}}}
    text = results_script.deploy_speed_table(result)
    row = [line for line in text.splitlines()
           if line.startswith("| TFLite, batch 1 streaming, 2")][0]
    assert row.split(" | ")[1:] == ["8 (1.00×)", "2 (4.00×)", "1 (8.00×)", "0.1 (80.00×) |"]
    keras_row = [line for line in text.splitlines() if line.startswith("| Keras")][0]
    assert keras_row.endswith("| 14 (1.00×) | — | 4 (3.50×) | — |")
    result["int8_chosen_by"] = "the faster in this run"
    text = results_script.deploy_speed_table(result)
    for words in ("51,000,000 → 6,811,396", "shared with other processes", "2026-11-23",
                  "The int8 columns are full-integer int8, the faster in this run.",
                  "dynamic-range int8: TFLite, batch 1 streaming, 2 threads: dense 2.5 (3.20×), "
                  "shrunk 0.2 (40.00×)", "80.00× (goal ≥ 100.00×, **not met**)"):
        assert words in text, words
    assert "no kept run" in results_script.deploy_speed_table(None)


def test_equal_size_table_sets_each_method_beside_the_dense_model():
    dense = fake_results(hidden_after=[200, 200], weights_after=4_651_600,
                         macs_per_token_after=2_640_000, test_perplexity_shrunk=115.0)
    iss = fake_results(hidden_after=[46, 118], weights_after=3_313_328,
                       macs_per_token_after=1_320_000, test_perplexity_shrunk=112.6)
    gmp = fake_results(hidden_before=[200, 200], hidden_after=[200, 200], weights_after=4_651_600,
                       nonzero_weights=3_313_000, macs_per_token_after=2_640_000,
                       test_perplexity_shrunk=113.9, magnitude={"sparsity": 0.288217})
    speed = {"run": dense["run"] | {"date_utc": "2026-12-06T00:00:00+00:00"},
             "load_before": {"load": [0.1, 0.1, 0.1]}, "shared": False, "repeats": 21,
             "tflite_threads": 2, "models": {
                 "dense": {"hidden": [200, 200], "zeroed": 0.0, "speedup_vs_dense": 1.0},
                 "units_46_118": {"hidden": [46, 118], "zeroed": 0.0, "speedup_vs_dense": 1.71},
                 "zeroed_0p288217": {"hidden": [200, 200], "zeroed": 0.288217,
                                     "speedup_vs_dense": 0.99}}}
    table = results_script.equal_size_table(
        {"small": dense, "small_target2x": iss, "small_gmp_2x": gmp}, speed)
    rows = {line.split(" | ")[2]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| 112.60 | 1,320,000 (2.00×) | 3,313,328 | 1.71× |" in rows["`small_target2x`"]
    # Unstructured pruning: dense shapes, its nonzero weights, the zeroed model's speed.
    assert "| 113.90 | 2,640,000 (1.00×) | 3,313,000 | 0.99× |" in rows["`small_gmp_2x`"]
    assert "(not run yet)" in rows["`small_unit_prune_3x`"]
    assert "nothing else running" in table


def test_bidaf_step_table_reads_both_variants_and_the_goal():
    variant = {"train_questions_per_second": 60.0, "eval_questions_per_second": 200.0,
               "context_padding": 1.3}
    fast = {"train_questions_per_second": 96.0, "eval_questions_per_second": 300.0,
            "context_padding": 1.02}
    result = {"run": fake_results()["run"], "load_before": {"load": [0.2, 0.2, 0.2]},
              "load_after": {"load": [1.9, 1.0, 0.5]}, "shared": False, "batch_size": 60,
              "models": [{"hidden_size": 32, "train_questions": 960, "previous": variant,
                          "fast": fast, "train_questions_per_second_speedup": 1.6,
                          "eval_questions_per_second_speedup": 1.5}],
              "goals": {"train_speedup_d32": {"got": 1.6, "goal": 1.5, "met": True}}}
    table = results_script.bidaf_step_table(result)
    assert "| 32 | 60.0 → 96.0 | **1.60×** | 200.0 → 300.0 | 1.50× | 1.30 → 1.02 |" in table
    assert "train speedup d32: 1.60× (goal ≥ 1.5×, met)" in table


def test_rhn_trio_table_checks_the_goal_against_dense_and_direct():
    dense = fake_results(hidden_before=[200], hidden_after=[200], macs_per_token=2_400_000,
                         macs_per_token_after=2_400_000, test_perplexity_shrunk=100.0)
    iss = fake_results(hidden_before=[200], hidden_after=[108], macs_per_token=2_400_000,
                       macs_per_token_after=1_196_640, test_perplexity_shrunk=101.5)
    direct = fake_results(hidden_before=[108], hidden_after=[108], macs_per_token=1_196_640,
                          macs_per_token_after=1_196_640, test_perplexity_shrunk=104.0)
    table = results_script.rhn_trio_table({"cpu_dense": dense, "cpu_iss": iss,
                                           "cpu_direct": direct})
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| 200 → 108 | 1,196,640 (2.01×) | 123.46 | 101.50 | +1.50 | -2.50 |" in rows["`cpu_iss`"]
    assert "| 108 → 108 | 1,196,640 (2.01×) | 123.46 | 104.00 | +4.00 | — |" in rows["`cpu_direct`"]
    assert ("2.01× fewer multiply-adds (met: ≥ 2×); +1.50 test perplexity (met: ≤ +2); below the "
            "direct design.") in table
    worse = results_script.rhn_trio_table({"cpu_dense": dense, "cpu_direct": direct,
                                           "cpu_iss": {**iss, "test_perplexity_shrunk": 104.5}})
    assert "+4.50 test perplexity (not met: ≤ +2); not below the direct design" in worse
    assert "(not run yet)" in results_script.rhn_trio_table({"cpu_dense": dense})
