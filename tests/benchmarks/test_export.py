"""The export benchmark runs end to end and prints one table row per dtype, with accuracy columns."""

import pytest

from benchmarks.export import cpu_description, main
from service.export import DTYPES


def test_bench_prints_a_row_per_dtype(capsys, tiny_ckpt_path):
    main(["--checkpoint", str(tiny_ckpt_path), "--widths", "8", "--repeats", "1", "--runs", "1",
          "--test-images", "100"])
    lines = capsys.readouterr().out.splitlines()
    assert cpu_description() in lines[0] and "accuracy on 100 test images" in lines[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines if line.startswith("| 8 |")]
    assert [row[1] for row in rows] == [*DTYPES, "int8-weights, folded"]
    sizes = {row[1]: int(row[2].replace(",", "")) for row in rows}
    assert sizes["float32"] > sizes["float16"] > sizes["int8"] > sizes["int8-weights"]
    float32 = rows[0]
    assert float32[6] == "1.00" and float32[8] == "100.00"  # float32 against itself
    for row in rows:
        assert 0 <= float(row[7]) <= 100 and 0 <= float(row[8]) <= 100


@pytest.mark.slow
def test_calibration_bench_compares_both_methods_on_the_shipped_checkpoint(capsys):
    from benchmarks.calibration import main as compare

    compare(["--width", "8", "--runs", "1", "--repeats", "1"])
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| method")]
    assert [row[0] for row in rows] == ["float32", "onnxruntime quantize_static", "generation-pass ranges (served)"]
    sizes = [int(row[2].replace(",", "")) for row in rows]
    assert sizes[1] < sizes[0] and sizes[2] < sizes[0]
    accuracy = [float(row[5]) for row in rows]
    assert all(abs(a - accuracy[0]) < 1.0 for a in accuracy)  # both are working int8 models
