from concurrent.futures import ThreadPoolExecutor

import polars as pl

from cmdrec.io import write_parquet_atomic


def test_concurrent_writers_of_one_parquet_file_all_succeed(tmp_path):
    # two benchmarks preparing the same data write the same files; neither may lose its temporary file
    path = tmp_path / "events.parquet"
    frame = pl.DataFrame({"command": list(range(20_000))})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: write_parquet_atomic(frame, path), range(32)))
    assert pl.read_parquet(path).equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]  # no temporary file left behind
