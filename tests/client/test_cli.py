"""`neumeta-pull` in-process: output, progress, and one exit code per error class."""

from __future__ import annotations

import socket

import pytest
from neumeta_client.cli import EXIT_CODES, main


def _pull(faulty, cache_dir, *extra: str) -> int:
    return main(["--server", faulty.url, "--arch", "resnet20", "--cache-dir", str(cache_dir), *extra])


def test_pull_prints_the_path_and_copies_with_output(faulty, cache_dir, tmp_path, model_body, capsys):
    out = tmp_path / "models" / "r20-w8.onnx"
    assert _pull(faulty, cache_dir, "--width", "8", "-o", str(out)) == 0

    stdout, stderr = capsys.readouterr()
    assert stdout.strip() == str(out)
    assert out.read_bytes() == model_body
    assert f"sha256={faulty.sha256[:12]}" in stderr and "width=8" in stderr
    assert list(out.parent.iterdir()) == [out]  # no temp file left next to it


def test_budget_flags_reach_the_server(faulty, cache_dir):
    assert _pull(faulty, cache_dir, "--max-bytes", "50000", "--dtype", "int8", "--samples", "3", "-q") == 0
    assert faulty.model_requests()[0].query == {"arch": "resnet20", "max_bytes": "50000", "dtype": "int8",
                                                "samples": "3"}


@pytest.mark.parametrize(("fault", "code"), [
    ("error:unknown_arch:404", 3), ("error:width_out_of_range:422", 4), ("error:invalid_parameter:422", 5),
    ("error:unauthorized:401", 6), ("busy:0", 7), ("error:internal:500", 8), ("corrupt", 9),
])
def test_each_error_class_has_its_own_exit_code(faulty, cache_dir, capsys, fault, code):
    faulty.script(fault)
    assert _pull(faulty, cache_dir, "--width", "8", "--retries", "0") == code
    assert "error:" in capsys.readouterr().err


def test_offline_and_transport_failures_exit_distinctly(faulty, cache_dir, capsys):
    assert _pull(faulty, cache_dir, "--width", "8", "--offline") == 10
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--server", f"http://127.0.0.1:{port}", "--arch", "resnet20", "--width", "8",
                 "--cache-dir", str(cache_dir), "--retries", "0"]) == 11


def test_exit_codes_are_distinct_and_documented_in_help(capsys):
    codes = [code for _, code, _ in EXIT_CODES]
    assert len(codes) == len(set(codes))
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for cls, code, _ in EXIT_CODES:
        assert f"{code:>3}  " in help_text and cls.__name__ in help_text


def test_width_and_budget_together_is_a_usage_error(faulty, cache_dir):
    with pytest.raises(SystemExit) as info:
        _pull(faulty, cache_dir, "--width", "8", "--max-params", "100")
    assert info.value.code == 2
    assert faulty.requests == []


def test_progress_bar_draws_on_a_terminal(faulty, cache_dir, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert _pull(faulty, cache_dir, "--width", "8") == 0
    drawn = terminal.getvalue()
    assert "\r[" in drawn and "100.0%" in drawn and drawn.count("\n") == 2  # bar line, then summary
