"""The camera-yaw study's results file and table (the experiment itself is long; EVALUATION.md has its numbers)."""

import json

from vjepa_ac.camera_yaw_study import format_calibration_table, format_table, main, read_results


def test_table_from_a_results_file_with_a_torn_last_line(tmp_path, capsys):
    records = [
        {"kind": "calibration", "camera_yaw": 30.0, "seed": 5000, "yaw": 24.0, "residual": 0.1,
         "residual_unrotated": 0.2, "residual_still": 0.3, "contrast": 0.4, "loo_spread": 5.0},
        {"kind": "calibration", "camera_yaw": 30.0, "seed": 5001, "yaw": 28.0, "residual": 0.3,
         "residual_unrotated": 0.4, "residual_still": 0.5, "contrast": 0.2, "loo_spread": 7.0},
        {"kind": "calibration", "camera_yaw": 30.0, "seed": 5002, "error": "the arm did not move"},
    ]
    records += [{"kind": "episode", "camera_yaw": 30.0, "condition": condition, "seed": 5000 + i,
                 "success": i < wins, "final_distance": 0.01 * (i + 1)} for condition, wins in (("uncorrected", 1), ("corrected", 3)) for i in range(4)]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "epis')
    assert len(read_results(path)) == len(records)
    table = format_table(read_results(path))
    row = table.splitlines()[-1]
    assert row.startswith("| +30 | +24.0 | +26.0 ± 2.8 (n=2; +24, +28); 1 refused |")
    assert "| 1/4 (25%, 5%-70%); 2.5 cm | 3/4 (75%, 30%-95%); 2.5 cm |" in row
    quality = format_calibration_table(read_results(path))
    assert quality.splitlines()[-1] == "| +30 | 0.200 | 0.300 | 0.400 | 0.300 | 6.0 |"
    assert main(["--out", str(tmp_path), "--table"]) == 0
    assert capsys.readouterr().out.strip() == table + "\n\n" + quality
