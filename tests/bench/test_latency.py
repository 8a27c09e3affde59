"""`detr bench latency` runs end to end (the numbers are not tested: it prints a table)."""

from detr.cli import main
from detr.config import SynthConfig
from detr.data.synthetic import write_dataset


def test_latency_benchmark_times_both_paths_at_each_batch(tmp_path, capsys):
    data = write_dataset(tmp_path / "synth", SynthConfig(train_images=4, val_images=3))
    assert main(["bench", "latency", "--quick", "--data", str(data), "--preset", "small"]) == 0
    printed = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in printed.splitlines()
            if line.startswith(("| PyTorch", "| onnxruntime"))]
    assert [(row[0], row[1]) for row in rows] == [("PyTorch", "1"), ("PyTorch", "2"), ("onnxruntime", "1"),
                                                  ("onnxruntime", "2")]
    assert all(float(row[2]) > 0 and row[3] == "-" for row in rows)  # no YOLO asked for: its cells stay empty
    assert "GFLOPs at" in printed and "PyTorch / onnxruntime" in printed
