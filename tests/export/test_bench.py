"""The export benchmark runs end to end and prints one table row per dtype."""

from service.export import DTYPES
from service.export.bench import main


def test_bench_prints_a_row_per_dtype(capsys, tiny_ckpt_path):
    main(["--checkpoint", str(tiny_ckpt_path), "--width", "4", "--repeats", "2", "--inputs", "2", "--runs", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| dtype")]
    assert [row.split("|")[1].strip() for row in rows] == list(DTYPES)
    sizes = [int(row.split("|")[4].strip().replace(",", "")) for row in rows]
    assert sizes[0] > sizes[1] > sizes[2]  # float32 > float16 > int8
