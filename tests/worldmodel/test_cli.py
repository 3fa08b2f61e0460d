"""`vjepa-ac info`: kind, preset, parameter count, key prefix and load status of a checkpoint."""

import json

import torch

from vjepa_ac.cli import main
from vjepa_ac.worldmodel import build_encoder



def test_info_on_the_reference_ac_checkpoint(reference_checkpoint, capsys):
    assert main(["info", str(reference_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "V-JEPA 2 action-conditioned world model" in out
    assert "key prefix: module.backbone." in out and "key prefix: module." in out
    assert "preset:     vit_tiny" in out and "preset:     vit_ac_tiny" in out
    assert "198,464" in out and "109,888" in out  # the fixture's parameter counts


def test_info_json_for_an_encoder_only_file(tmp_path, capsys):
    encoder = build_encoder("vjepa2_1_vit_tiny")
    torch.save({"ema_encoder": {f"module.backbone.{k}": v for k, v in encoder.state_dict().items()}},
               tmp_path / "enc.pt")
    assert main(["info", "--json", str(tmp_path / "enc.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "V-JEPA 2.1 encoder"
    assert report["encoder"]["entry"] == "ema_encoder" and report["encoder"]["preset"] == "vjepa2_1_vit_tiny"
    assert "no AC predictor found" in report["predictor"]["error"]


def test_info_reports_what_does_not_load(tmp_path, reference_checkpoint, capsys):
    assert main(["info", "--preset", "vit_large", str(reference_checkpoint)]) == 0  # the predictor still loads
    out = capsys.readouterr().out
    assert "does not load" in out and "shape mismatch: patch_embed.proj.weight" in out
    (tmp_path / "cut.pt").write_bytes(reference_checkpoint.read_bytes()[:1000])
    assert main(["info", str(tmp_path / "cut.pt")]) == 1
    assert "truncated" in capsys.readouterr().err


def test_info_with_architecture_hints(capsys, tmp_path):
    # A 2.1 encoder whose width (32) matches no released model: the head count cannot be inferred from the weights.
    encoder = build_encoder("vjepa2_1_vit_tiny", embed_dim=32, num_heads=2, depth=12, img_size=96)
    checkpoint = tmp_path / "vjepa2_1-tiny.pt"
    state = {f"module.backbone.{key}": value for key, value in encoder.state_dict().items()}
    torch.save({"target_encoder": state, "epoch": 0}, checkpoint)
    assert main(["info", str(checkpoint)]) == 1
    assert "pass num_heads=" in capsys.readouterr().out
    assert main(["info", "--num-heads", "2", "--img-size", "96", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "kind:       V-JEPA 2.1 encoder" in out and "hierarchical_layers=(2, 5, 8, 11)" in out


def test_info_names_the_views_of_a_multi_view_world_model(tmp_path, capsys):
    from vjepa_ac.worldmodel import build_predictor, save_ac_checkpoint

    path = save_ac_checkpoint(tmp_path / "two.pt", encoder=build_encoder("vit_tiny"),
                              predictor=build_predictor("vit_ac_tiny", img_size=(64, 128)))
    assert main(["info", "--json", str(path)]) == 0
    kind = json.loads(capsys.readouterr().out)["kind"]
    assert kind == "V-JEPA 2 action-conditioned world model (encoder + AC predictor), 2 camera views side by side"
