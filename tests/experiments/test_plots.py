"""`cmdrec plot`: every picture is written, and colours are stable across pictures."""

from cmdrec.cli import main
from cmdrec.experiments.plots import category_colours
from cmdrec.training.loop import train
from tests.conftest import tiny_run


def test_data_and_embedding_pictures_are_written(tiny_data, tmp_path, capsys):
    processed = tiny_data.parent / "processed"
    assert main(["plot", "data", str(processed), "--out", str(tmp_path / "data")]) == 0
    assert {p.name for p in (tmp_path / "data").iterdir()} == {"session_lengths.png", "command_frequencies.png"}
    train(tiny_run(tiny_data, tmp_path / "runs", "drawn"), show_progress=False)
    assert main(["plot", "embeddings", str(tmp_path / "runs" / "drawn"), "--out", str(tmp_path / "maps")]) == 0
    assert (tmp_path / "maps" / "learned_embeddings_map.png").stat().st_size > 10_000
    assert main(["plot", "data", str(tmp_path)]) == 2
    assert "no processing_report.json" in capsys.readouterr().err


def test_a_category_keeps_its_colour_whatever_else_is_drawn():
    first = category_colours(["Edit", "Edit", "View", "Build"])
    again = category_colours(["Build", "View", "Edit", "Edit"])
    assert first == again and len(set(first.values())) == 3


def test_attention_maps_are_drawn_per_layer_for_a_transformer_and_refused_for_a_gru(tiny_data, tmp_path, capsys):
    import torch
    from PIL import Image

    from cmdrec.experiments.plots import plot_attention
    from cmdrec.serving import Predictor

    run = tmp_path / "runs" / "attending"
    layers = {"n_layers": 2, "n_heads": 2}
    train(tiny_run(tiny_data, tmp_path / "runs", "attending", model={"layers": layers}), show_progress=False)
    history = ["Open", "Wall", "Wall", "Door", "Window"]
    written = plot_attention(run, history, tmp_path / "attention")
    assert [p.name for p in written] == ["attention_layer1.png", "attention_layer2.png"]
    assert Image.open(written[0]).size[0] > 300
    predictor = Predictor(run)  # the maps leave the model as it was: sdpa, same suggestions
    assert predictor.model.backbone.model.config._attn_implementation == "sdpa"
    assert torch.isfinite(torch.tensor(predictor.recommend(history).scores)).all()
    train(tiny_run(tiny_data, tmp_path / "runs", "recurrent", model={"backbone": "gru"}), show_progress=False)
    assert main(["plot", "attention", str(tmp_path / "runs" / "recurrent"), "--history", "Wall"]) == 2
    assert "exposes no attention maps" in capsys.readouterr().err
    assert main(["plot", "attention", str(run)]) == 2
