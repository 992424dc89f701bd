"""The `neumeta` command: generate/archs/inspect, and one-line errors with the right exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.archs import folded_model
from service.cli import COMMAND_MODULES, main
from service.hypernet import generate, load_checkpoint
from tests.factories import tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_shipped_checkpoints(tmp_path, monkeypatch):
    # Tests must not depend on whichever trained checkpoints ship (or not) in service/checkpoints.
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setenv("NEUMETA_CHECKPOINT_DIR", str(empty))
    monkeypatch.delenv("NEUMETA_CHECKPOINTS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors exit directly
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, code, exit_code, *fragments):
    assert rc == exit_code
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"error: {code}: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_generate_writes_a_model_that_matches_torch(capsys, tiny_ckpt_path, tmp_path):
    out = tmp_path / "m.onnx"
    rc, stdout, err = run(capsys, "generate", "--arch", "resnet20", "--width", 17, "--samples", 2,
                          "--checkpoint", tiny_ckpt_path, "-o", out)
    assert (rc, err) == (0, "")
    data = out.read_bytes()
    assert stdout.count("\n") == 1 and str(out) in stdout and f"bytes={len(data)}" in stdout
    onnx.checker.check_model(onnx.load_from_string(data))
    x = torch.randn(2, 1, 28, 28)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = folded_model(generate(load_checkpoint(tiny_ckpt_path), 17, samples=2), 1, 10)(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir() if "incomplete" in p.name] == []


@pytest.mark.parametrize("dtype,torch_dtype", [("float32", torch.float32), ("float16", torch.float16)])
def test_generate_safetensors_writes_the_generated_state_dict(capsys, tiny_ckpt_path, tmp_path, dtype, torch_dtype):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from service.training.folded import load_folded

    out = tmp_path / "w.safetensors"
    rc, stdout, err = run(capsys, "generate", "--arch", "resnet20", "--width", 17, "--samples", 2, "--dtype", dtype,
                          "--format", "safetensors", "--checkpoint", tiny_ckpt_path, "-o", out)
    assert (rc, err) == (0, "") and "format=safetensors" in stdout
    ckpt = load_checkpoint(tiny_ckpt_path)
    expected = generate(ckpt, 17, samples=2)
    with safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()["neumeta"])
    got = load_file(str(out))
    assert meta["width"] == 17 and meta["samples"] == 2 and meta["checkpoint_sha256"] == ckpt.sha256
    assert sorted(got) == sorted(expected)
    for name, w in expected.items():
        assert got[name].dtype == torch_dtype and torch.equal(got[name], w.to(torch_dtype)), name
    # The file is a --base for `neumeta train hypernet` (e.g. a KD teacher generated at full width).
    state, _ = load_folded(out)
    assert sorted(state) == sorted(expected)


def test_generate_safetensors_refuses_int8_before_writing(capsys, tiny_ckpt_path, tmp_path):
    out = tmp_path / "w.safetensors"
    rc, _, err = run(capsys, "generate", "--arch", "resnet20", "--width", 8, "--dtype", "int8",
                     "--format", "safetensors", "--checkpoint", tiny_ckpt_path, "-o", out)
    assert_one_line_error(rc, err, "invalid_parameter", 2, "use --format onnx")
    assert list(tmp_path.glob("w.safetensors*")) == [] and not out.exists()


def test_generate_uses_the_catalog_without_checkpoint(capsys, tmp_path, monkeypatch):
    path = tiny_checkpoint(tmp_path / "last.safetensors", arch="resnet20-last", scope="last")
    monkeypatch.setenv("NEUMETA_CHECKPOINTS", str(path))
    rc, stdout, err = run(capsys, "generate", "--arch", "resnet20-last", "--width", 20, "--dtype", "int8",
                          "-o", tmp_path / "q.onnx")
    assert rc == 0, err
    rc, stdout, _ = run(capsys, "inspect", tmp_path / "q.onnx")
    info = json.loads(stdout)
    assert rc == 0 and info["dtype"] == "int8" and info["metadata"]["neumeta.arch"] == "resnet20-last"
    assert info["metadata"]["neumeta.width"] == "20" and info["params"] == int(info["metadata"]["neumeta.params"])


def test_archs_prints_the_catalog(capsys, tiny_ckpt_path, tmp_path):
    other = tiny_checkpoint(tmp_path / "last.safetensors", arch="resnet20-last", scope="last")
    rc, stdout, _ = run(capsys, "archs", "--checkpoint", tiny_ckpt_path, "--checkpoint", other)
    catalog = json.loads(stdout)
    assert rc == 0 and sorted(catalog) == ["families", "resnet20", "resnet20-last"]  # what GET /archs answers
    assert catalog["resnet20-last"]["scope"] == "last" and catalog["resnet20"]["widths"]["min"] == 1
    assert catalog["families"]["resnet20"]["archs"] == ["resnet20", "resnet20-last"]
    rc, stdout, _ = run(capsys, "archs")  # nothing shipped: an empty catalog, not an error
    assert (rc, json.loads(stdout)) == (0, {"families": {}})


@pytest.mark.parametrize("args,code,exit_code,fragment", [
    (["--width", 99], "width_out_of_range", 2, "allowed range 1..64"),
    (["--width", 0], "width_out_of_range", 2, "width 0"),
    (["--width", 8, "--samples", 0], "invalid_parameter", 2, "samples must be an integer in 1..100"),
    (["--width", 8, "--samples", 101], "invalid_parameter", 2, "got 101"),
    (["--width", 8, "--dtype", "bf16"], "invalid_parameter", 2, "invalid choice: 'bf16'"),
    (["--width", "wide"], "invalid_parameter", 2, "invalid int value: 'wide'"),
    (["--width", 8, "--backend", "triton"], "invalid_parameter", 2, "backend 'triton' unavailable"),
    (["--width", 8, "--arch", "resnet56"], "unknown_arch", 2, "serves arch 'resnet20', not 'resnet56'"),
])
def test_generate_errors(capsys, tiny_ckpt_path, tmp_path, args, code, exit_code, fragment):
    if "triton" in args and torch.cuda.is_available():
        pytest.skip("triton is available on a CUDA machine")
    argv = ["generate", "--arch", "resnet20", "--checkpoint", tiny_ckpt_path, "-o", tmp_path / "m.onnx", *args]
    rc, _, err = run(capsys, *argv)
    assert_one_line_error(rc, err, code, exit_code, fragment)
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_arch_without_shipped_checkpoints(capsys, tmp_path):
    rc, _, err = run(capsys, "generate", "--arch", "resnet20", "--width", 8, "-o", tmp_path / "m.onnx")
    assert_one_line_error(rc, err, "unknown_arch", 2, "no checkpoints found", "--checkpoint")


@pytest.mark.parametrize("output,code,exit_code,fragment", [
    ("missing-dir/m.onnx", "invalid_parameter", 2, "does not exist"),
    (".", "invalid_parameter", 2, "is a directory"),
    # Passes the up-front check (os.access says yes for root) and still fails at write time.
    pytest.param("/proc/neumeta-test.onnx", "internal", 1, "cannot write /proc/neumeta-test.onnx",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="root-only case")),
])
def test_unwritable_output(capsys, tiny_ckpt_path, tmp_path, output, code, exit_code, fragment):
    target = output if output.startswith("/") else tmp_path / output
    rc, _, err = run(capsys, "generate", "--arch", "resnet20", "--width", 8, "--checkpoint", tiny_ckpt_path,
                     "-o", target)
    assert_one_line_error(rc, err, code, exit_code, fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only directories")
def test_read_only_directory(capsys, tiny_ckpt_path, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    rc, _, err = run(capsys, "generate", "--arch", "resnet20", "--width", 8, "--checkpoint", tiny_ckpt_path,
                     "-o", locked / "m.onnx")
    assert_one_line_error(rc, err, "invalid_parameter", 2, "is not writable")


@pytest.mark.parametrize("content,fragment", [
    (None, "cannot read checkpoint"),
    (b"not a checkpoint", "truncated or not a safetensors file"),
])
def test_missing_or_corrupt_checkpoint(capsys, tmp_path, content, fragment):
    path = tmp_path / "c.safetensors"
    if content is not None:
        path.write_bytes(content)
    rc, _, err = run(capsys, "generate", "--arch", "resnet20", "--width", 8, "--checkpoint", path,
                     "-o", tmp_path / "m.onnx")
    assert_one_line_error(rc, err, "internal", 1, fragment)


def test_inspect_errors(capsys, tmp_path):
    rc, _, err = run(capsys, "inspect", tmp_path / "nope.onnx")
    assert_one_line_error(rc, err, "internal", 1, "nope.onnx", "No such file")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage" * 10)
    rc, _, err = run(capsys, "inspect", tmp_path / "bad.onnx")
    assert_one_line_error(rc, err, "invalid_parameter", 2, "bad.onnx is not")


def test_missing_subcommand_and_required_args(capsys):
    rc, _, err = run(capsys)
    assert rc == 2 and "generate" in err
    rc, _, err = run(capsys, "generate", "--width", 8)
    assert_one_line_error(rc, err, "invalid_parameter", 2, "required")


def test_extension_modules_register_subcommands(capsys, monkeypatch):
    # Other packages plug in their verbs (serve, train, eval, bench) through COMMAND_MODULES.
    import types

    def register(subparsers):
        p = subparsers.add_parser("hello")
        p.set_defaults(func=lambda args: print("hi") or 3)

    monkeypatch.setitem(sys.modules, "fake_commands", types.SimpleNamespace(register=register))
    monkeypatch.setattr("service.cli.COMMAND_MODULES", [*COMMAND_MODULES, "fake_commands"])
    assert run(capsys, "hello")[:2] == (3, "hi\n")


def test_real_process_errors_have_no_traceback(tmp_path):
    # The installed entry point is service.cli:main; run it in a real interpreter once.
    env = {**os.environ, "NEUMETA_CHECKPOINT_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    ckpt = tiny_checkpoint(tmp_path / "t.safetensors")
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "generate", "--arch", "resnet20", "--width", "70",
         "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: width_out_of_range:") and proc.stderr.count("\n") == 1
