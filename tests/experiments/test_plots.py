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
