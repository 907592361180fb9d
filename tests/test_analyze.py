"""torch2mlx.analyze: every blocker kind and hazard at its exact file:line with its fix, a
clean report for a convertible model, the CLI's exit statuses, agreement with convert, and
an analysis that leaves the model as it was."""

from __future__ import annotations

import inspect
import json
import warnings

import pytest
import torch
from tests import analyzer_models
from tests.analyzer_models import FACTORIES

import torch2mlx
from torch2mlx import cli
from torch2mlx.analyze import EXIT_BLOCKED, EXIT_CONVERTIBLE, EXIT_UNDETERMINED

MODELS_FILE = inspect.getsourcefile(analyzer_models)


def marked_line(marker: str) -> int:
    """The line of tests/analyzer_models.py that carries `# <- marker`."""
    lines = open(MODELS_FILE).read().splitlines()  # noqa: SIM115
    (line,) = [i + 1 for i, text in enumerate(lines) if text.endswith(f"# <- {marker}")]
    return line


def only(report, kind):
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, [(f.kind, f.location) for f in report.findings]
    return found[0]


def analyze(name, with_inputs=True):
    model, inputs, dynamic = FACTORIES[name]()
    if not with_inputs:
        return torch2mlx.analyze(model)
    return torch2mlx.analyze(model, inputs, dynamic)


# Hazards in forward source, without example inputs: (model, kind, marker, blocker, words
# of the fix).
HAZARDS = [
    ("item", "item", "item", False, "instead of calling .item()"),
    ("numpy", "numpy", "numpy", True, "torch ops on the tensor instead of numpy"),
    ("tolist", "tolist", "tolist", False, "keep the values in a tensor"),
    ("branch_on_value", "tensor_control_flow", "tensor_control_flow", True, "torch.where(cond"),
    ("step_counter", "attribute_mutation", "attribute_mutation", True, "return the new value"),
    ("writes_input", "input_mutation", "input_mutation", True, "x = x.clone()"),
    ("autograd_function", "autograd_function", "autograd_function", False, "call the torch"),
    ("custom_kernel", "custom_extension", "custom_kernel", True, "write the kernel in torch ops"),
    ("compiled_extension", "custom_extension", "compiled_extension", True, "in torch ops"),
    ("hooked", "hook", "hook", False, "remove the hook before conversion"),
]


@pytest.mark.parametrize(("name", "kind", "marker", "blocker", "fix"), HAZARDS)
def test_each_hazard_is_reported_at_its_line_without_inputs(name, kind, marker, blocker, fix):
    report = analyze(name, with_inputs=False)
    finding = only(report, kind)
    assert finding.location == f"{MODELS_FILE}:{marked_line(marker)}"
    assert finding.blocker is blocker
    assert fix in finding.fix
    assert report.graph_examined is False
    assert report.verdict == ("blocked" if blocker else "undetermined")
    assert report.exit_code == (EXIT_BLOCKED if blocker else EXIT_UNDETERMINED)


def test_shape_and_flag_control_flow_is_not_a_hazard():
    report = analyze("branch_on_shape", with_inputs=False)
    assert report.findings == []
    assert report.verdict == "undetermined"  # no graph: not yet known to convert
    assert analyze("branch_on_shape").verdict == "convertible"


def test_in_place_updates_of_temporaries_are_harmless():
    report = analyze("local_in_place")
    assert report.verdict == "convertible", report.format_text()
    harmless = {item["location"] for item in report.mutations["harmless"]}
    assert harmless == {
        f"{MODELS_FILE}:{marked_line('inplace_local')}",
        f"{MODELS_FILE}:{marked_line('inplace_local_2')}",
    }
    assert report.mutations["aliasing"] == []
    assert not report.blockers


# Blockers found by capturing the graph: (model, kind, marker, words of the message, of the fix).
BLOCKERS = [
    ("branch_on_value", "data_dependent_control_flow", "tensor_control_flow",
     "value known only from the data", "torch.where"),
    ("numpy", "unsupported_python", "numpy", "cannot trace", "no .numpy()"),
    ("dynamic_guard", "dynamic_dim_guard", "dynamic_dim_guard", "dimension passed as dynamic",
     "drop that dimension from dynamic_shapes"),
    ("unsupported_op", "unsupported_op", "unsupported_op", "depends on the data", "docs/ops.md"),
    ("custom_kernel", "custom_kernel", "custom_kernel", "namespace 't2mtest'", "pure-torch"),
    ("step_counter", "aliasing_mutation", "attribute_mutation", "buffer 'steps'",
     "return the new value from forward"),
    ("writes_input", "aliasing_mutation", "input_mutation", "input 'x'",
     "return the result instead of writing into the input"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "marker", "message", "fix"), BLOCKERS)
def test_each_blocker_is_reported_at_the_users_line(name, kind, marker, message, fix):
    report = analyze(name)
    blockers = [f for f in report.blockers if f.kind == kind]
    assert len(blockers) == 1, report.format_text()
    finding = blockers[0]
    assert finding.location == f"{MODELS_FILE}:{marked_line(marker)}", report.format_text()
    assert message in finding.message
    assert fix in finding.fix
    assert report.verdict == "blocked"
    assert report.exit_code == EXIT_BLOCKED
    # The hazards found in the source are notes now: the capture decided.
    assert all(f.kind == kind for f in report.blockers)


def test_unsupported_op_names_its_module_and_lowers_coverage():
    report = analyze("unsupported_op")
    finding = only(report, "unsupported_op")
    assert finding.target == "aten.nonzero.default"
    assert report.ops["unsupported"] == ["aten.nonzero.default"]
    assert report.ops["coverage"] < 1.0


def test_a_convertible_model_gives_a_clean_report():
    report = analyze("clean")
    assert report.verdict == "convertible"
    assert report.exit_code == EXIT_CONVERTIBLE
    assert report.findings == []
    assert report.ops["coverage"] == 1.0
    assert report.ops["unsupported"] == []
    assert report.modules["share_by_modules"] == 1.0
    assert report.modules["share_by_parameters"] == 1.0
    # fc1 (in 64) splits into groups of 64; fc2 (in 128) too.
    assert [q["target"] for q in report.quantizable] == ["fc1.weight", "fc2.weight"]
    text = report.format_text()
    assert text.splitlines()[0].startswith("torch2mlx_test_models") is False
    assert "CONVERTIBLE" in text.splitlines()[0] and "op coverage 100.0%" in text


def test_decomposed_ops_are_convertible_and_named():
    report = analyze("decomposed")
    assert report.verdict == "convertible", report.format_text()
    assert "aten.cdist.default" in report.decomposed_ops
    assert report.ops["coverage"] == 1.0


def test_unmapped_modules_are_listed_with_counts_and_paths():
    report = analyze("with_scale", with_inputs=False)
    modules = report.modules
    assert modules["unmapped_types"] == [
        {"type": "tests.analyzer_models.Scale", "count": 2, "paths": ["scale", "scale2"]}
    ]
    assert modules["total"] == 4 and modules["mapped"] == 1 and modules["composite"] == 1
    assert modules["share_by_modules"] == 0.5
    assert modules["share_by_parameters"] == pytest.approx(72 / 88)
    assert analyze("with_scale").verdict == "convertible"


def test_the_analysis_does_not_change_the_model():
    model, inputs, _ = FACTORIES["step_counter"]()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch2mlx.analyze(model, inputs)
    torch2mlx.analyze(model)
    assert model.training is True
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    model, inputs, _ = FACTORIES["clean"]()
    data = [p.detach().clone() for p in model.parameters()]
    torch2mlx.analyze(model, inputs)
    assert all(torch.equal(a, p) for a, p in zip(data, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())


def test_json_has_the_documented_fields():
    data = json.loads(analyze("unsupported_op").to_json())
    assert data["schema_version"] == 1
    assert data["verdict"] == "blocked" and data["blockers"] == 1
    assert {"model", "graph_examined", "modules", "ops", "findings", "mutations",
            "quantizable", "decomposed_ops", "export"} <= data.keys()  # fmt: skip
    finding = next(f for f in data["findings"] if f["blocker"])
    assert finding["location"] == f"{MODELS_FILE}:{marked_line('unsupported_op')}"
    assert {"kind", "message", "fix", "file", "line", "code", "module_path", "target"} <= set(
        finding
    )


def test_cli_exit_statuses_and_json(capsys, monkeypatch):
    monkeypatch.chdir(MODELS_FILE.rsplit("/tests/", 1)[0])
    assert cli.main(["analyze", "tests.analyzer_models:clean_cli", "--json"]) == EXIT_CONVERTIBLE
    assert json.loads(capsys.readouterr().out)["verdict"] == "convertible"
    assert cli.main(["analyze", "tests.analyzer_models:unsupported_op_cli"]) == EXIT_BLOCKED
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "BLOCKED" in lines[0] and "1 blocker(s)" in lines[0]
    assert lines[2].split() == ["blocker", "where", "module", "what"]
    assert f"analyzer_models.py:{marked_line('unsupported_op')}" in lines[3]
    assert "aten.nonzero.default" in lines[3]
    assert cli.main(["analyze", "tests.analyzer_models:clean_model_only"]) == EXIT_UNDETERMINED
    assert (
        cli.main(["analyze", "tests.analyzer_models:clean_model_only", "--input-shape", "3x64"])
        == EXIT_CONVERTIBLE
    )


def test_a_pt2_is_analyzed_through_our_reader(tmp_path, monkeypatch):
    model, inputs, _ = FACTORIES["unsupported_op"]()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, inputs), str(path))

    def refuse(*args, **kwargs):
        raise AssertionError("torch.export.load must not be called on a user's file")

    monkeypatch.setattr(torch.export, "load", refuse)
    report = torch2mlx.analyze(path)
    assert report.verdict == "blocked"
    assert only(report, "unsupported_op").line == marked_line("unsupported_op")
    clean, clean_inputs, _ = FACTORIES["clean"]()
    torch.export.save(torch.export.export(clean, clean_inputs), str(tmp_path / "clean.pt2"))
    assert torch2mlx.analyze(tmp_path / "clean.pt2").verdict == "convertible"
    # Modules come from the nodes' module stacks, tensors from the signature.
    scaled, scaled_inputs, _ = FACTORIES["with_scale"]()
    torch.export.save(torch.export.export(scaled, scaled_inputs), str(tmp_path / "scaled.pt2"))
    modules = torch2mlx.analyze(tmp_path / "scaled.pt2").modules
    assert modules["unmapped_types"] == [
        {"type": "tests.analyzer_models.Scale", "count": 2, "paths": ["scale", "scale2"]}
    ]
    assert modules["share_by_parameters"] == pytest.approx(72 / 88)


AGREEMENT = sorted(FACTORIES)


@pytest.mark.parametrize("name", AGREEMENT)
def test_the_verdict_agrees_with_convert(name, tmp_path):
    predicted = analyze(name)
    model, inputs, dynamic = FACTORIES[name]()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = torch2mlx.convert(
                model, inputs, tmp_path / "pkg", dynamic_shapes=dynamic, quiet=True
            )
        converted = result.passed is True
    except torch2mlx.Torch2MLXError:
        converted = False
    # Never "convertible" for a model convert fails on. The analyzer may be stricter only
    # about state the MLX model would drop: convert writes that package, with a note.
    assert converted or not predicted.convertible, predicted.format_text()
    if converted and not predicted.convertible:
        assert {f.kind for f in predicted.blockers} == {"aliasing_mutation"}
    if converted:
        report = json.loads((tmp_path / "pkg/report.json").read_text())
        assert report["analysis"]["verdict"] == predicted.verdict
        assert report["analysis"]["ops"]["coverage"] == predicted.ops["coverage"]
