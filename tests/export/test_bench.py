"""The export benchmark runs end to end and prints one table row per dtype, with accuracy columns."""

from service.export import DTYPES
from service.export.bench import cpu_description, main


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
