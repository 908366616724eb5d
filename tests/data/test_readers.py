import gzip
import json

import polars as pl
import pytest

from cmdrec.config import CatalogueConfig, SourceConfig
from cmdrec.data.files import LoadReport
from cmdrec.data.readers import (
    CATEGORY,
    COMMAND,
    DESCRIPTION,
    NO_CATEGORY,
    ORDER,
    TIME,
    USER,
    describe_command,
    join_catalogue,
    read_catalogue,
    read_events,
)
from cmdrec.errors import InputError
from tests.conftest import write

CSV = (
    "user,time,cmd,tool\nu1,2024-01-01 10:00:00,Open,a\nu1,2024-01-01 10:00:05,Save,b\nu2,2024-01-01 11:00:00,Open,a\n"
)


def source(path, **kwargs):
    defaults = dict(path=str(path), user_column="user", command_column="cmd", timestamp_column="time")
    return SourceConfig(**(defaults | kwargs))


def test_generic_csv_with_metadata(tmp_path):
    events, report = read_events(source(write(tmp_path / "log.csv", CSV), metadata_columns=("tool",)))
    assert events.columns == [USER, TIME, COMMAND, "tool", ORDER]
    assert events[COMMAND].to_list() == ["Open", "Save", "Open"]
    assert events[TIME].dtype == pl.Datetime("us")
    assert events[ORDER].to_list() == [1, 2, 3]
    assert report.rows_read == 3


def test_csv_gz_parquet_and_jsonl_read_the_same(tmp_path):
    csv_events, _ = read_events(source(write(tmp_path / "log.csv", CSV)))
    gz = write(tmp_path / "log.csv.gz", gzip.compress(CSV.encode()))
    parquet = tmp_path / "log.parquet"
    pl.read_csv(tmp_path / "log.csv").write_parquet(parquet)
    lines = [json.dumps(r) for r in pl.read_csv(tmp_path / "log.csv").to_dicts()]
    jsonl = write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")
    for path in (gz, parquet, jsonl):
        events, _ = read_events(source(path))
        assert events.select(USER, TIME, COMMAND).equals(csv_events.select(USER, TIME, COMMAND)), path


def test_timestamps_optional_row_order_defines_order(tmp_path):
    path = write(tmp_path / "log.csv", "user,cmd\nu1,B\nu1,A\n")
    events, _ = read_events(source(path, timestamp_column=None))
    assert events[TIME].null_count() == 2
    assert events[ORDER].to_list() == [1, 2]


def test_epoch_seconds_timestamps(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,1700000000,A\nu1,1700000060.5,B\n")
    events, _ = read_events(source(path))
    assert (events[TIME][1] - events[TIME][0]).total_seconds() == 60.5


def test_directory_reads_every_file_in_order(tmp_path):
    write(tmp_path / "d" / "a.csv", "user,time,cmd\nu1,2024-01-01 10:00:00,A\n")
    write(tmp_path / "d" / "b.csv", "user,time,cmd\nu2,2024-01-01 10:00:00,B\n")
    events, report = read_events(source(tmp_path / "d"))
    assert report.files == 2
    assert events[COMMAND].to_list() == ["A", "B"]
    assert events[ORDER].to_list() == [1, 2]


def test_user_item_format(tmp_path):
    path = write(tmp_path / "beauty.txt.gz", gzip.compress(b"1 10\n1 11\n2 10\n"))
    events, _ = read_events(SourceConfig(format="user_item", path=str(path), timestamp_column=None))
    assert events[USER].to_list() == ["1", "1", "2"]
    assert events[COMMAND].to_list() == ["10", "11", "10"]


# ---------------------------------------------------------------- bad input


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "log.csv", "user,when,cmd\nu1,2024-01-01,A\n")
    with pytest.raises(
        InputError, match=r"log.csv: missing column\(s\) \['time'\]; the file has \['user', 'when', 'cmd'\]"
    ):
        read_events(source(path))


def test_malformed_row_names_row(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,2024-01-01 10:00:00,A\nu1,2024-01-01 10:00:01,B,extra\n")
    with pytest.raises(InputError, match=r"log.csv, row 2: expected 3 fields"):
        read_events(source(path))


def test_malformed_row_skipped_and_counted(tmp_path):
    path = write(
        tmp_path / "log.csv",
        "user,time,cmd\nu1,2024-01-01 10:00:00,A\nu1,2024-01-01 10:00:01,B,extra\nu1,2024-01-01 10:00:02,C\n",
    )
    events, report = read_events(source(path, on_bad_rows="skip"))
    assert events[COMMAND].to_list() == ["A", "C"]
    assert report.bad_rows == {"wrong number of fields": 1}


def test_unparsable_timestamp_names_row_and_field(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,2024-01-01 10:00:00,A\nu1,yesterday,B\n")
    with pytest.raises(InputError, match=r"log.csv, row 2, field 'time': cannot parse timestamp 'yesterday'"):
        read_events(source(path, timestamp_format="%Y-%m-%d %H:%M:%S"))
    events, report = read_events(source(path, timestamp_format="%Y-%m-%d %H:%M:%S", on_bad_rows="skip"))
    assert events.height == 1 and report.bad_rows == {"unparsable timestamp": 1}


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="log.csv: file is empty"):
        read_events(source(write(tmp_path / "log.csv", "")))


def test_header_only_file(tmp_path):
    with pytest.raises(InputError, match="log.csv: no data rows"):
        read_events(source(write(tmp_path / "log.csv", "user,time,cmd\n")))


def test_non_utf8_bytes_name_row(tmp_path):
    path = write(tmp_path / "log.csv", b"user,time,cmd\nu1,2024-01-01 10:00:00,A\nu1,2024-01-01 10:00:01,B\xff\xfe\n")
    with pytest.raises(InputError, match=r"log.csv, row 2: bytes are not valid UTF-8 \(byte 0xff"):
        read_events(source(path))
    events, report = read_events(source(path, on_bad_rows="skip"))
    assert events[COMMAND].to_list() == ["A"]
    assert report.bad_rows == {"invalid UTF-8": 1}


def test_row_numbers_stay_true_after_a_skipped_line(tmp_path):
    # row 1 is dropped as invalid UTF-8; the bad timestamp below it must still be named row 2
    path = write(
        tmp_path / "log.csv", b"user,time,cmd\nu1,2024-01-01 10:00:00,\xff\nu1,never,B\nu1,2024-01-01 10:00:09,C\n"
    )
    events, report = read_events(source(path, timestamp_format="%Y-%m-%d %H:%M:%S", on_bad_rows="skip"))
    assert events[COMMAND].to_list() == ["C"]
    assert report.bad_rows == {"invalid UTF-8": 1, "unparsable timestamp": 1}
    assert any("row 2, field 'time'" in example for example in report.examples)


def test_empty_command_value(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,2024-01-01 10:00:00,\n")
    with pytest.raises(InputError, match=r"row 1, field 'cmd': value is empty"):
        read_events(source(path))


def test_invalid_jsonl_line(tmp_path):
    path = write(tmp_path / "log.jsonl", '{"user": "u1", "cmd": "A"}\n{"user": "u1", "cmd": \n')
    with pytest.raises(InputError, match=r"log.jsonl, row 2: not a JSON object"):
        read_events(source(path, timestamp_column=None))


def test_corrupt_gzip(tmp_path):
    with pytest.raises(InputError, match="not a readable gzip file"):
        read_events(source(write(tmp_path / "log.csv.gz", b"not gzip at all")))


def test_no_files_found(tmp_path):
    with pytest.raises(InputError, match="no input files found"):
        read_events(source(tmp_path / "nothing-*.csv"))


# ---------------------------------------------------------------- catalogue


def test_catalogue_join_reports_both_directions(tmp_path):
    events, _ = read_events(source(write(tmp_path / "log.csv", CSV)))
    path = write(tmp_path / "cat.csv", "command,category,description\nOpen,File,open a file\nPrint,File,print\n")
    catalogue = read_catalogue(CatalogueConfig(path=str(path)))
    joined, report = join_catalogue(events, catalogue, CatalogueConfig(path=str(path)))
    assert report["commands_in_log_not_in_catalogue"] == 1
    assert report["events_with_commands_not_in_catalogue"] == 1
    assert report["examples_not_in_catalogue"] == ["Save"]
    assert report["commands_in_catalogue_never_used"] == 1
    assert report["examples_never_used"] == ["Print"]
    assert dict(zip(joined[COMMAND], joined[CATEGORY], strict=False)) == {"Open": "File", "Save": NO_CATEGORY}
    with pytest.raises(InputError, match="not in the catalogue"):
        join_catalogue(events, catalogue, CatalogueConfig(path=str(path), on_unknown_commands="error"))


def test_catalogue_duplicate_command_names_rows(tmp_path):
    path = write(tmp_path / "cat.csv", "command,category\nOpen,File\nSave,File\nOpen,Edit\n")
    with pytest.raises(InputError, match=r"'Open' is listed more than once \(rows \[1, 3\]\)"):
        read_catalogue(CatalogueConfig(path=str(path), description_column=None))


def test_catalogue_null_categories_and_names_as_descriptions(tmp_path):
    path = write(tmp_path / "cat.csv", "message,category\nEdit.GoToDefinition,Navigation\nFile.Exit,NULL\n")
    config = CatalogueConfig(path=str(path), command_column="message", description_column=None, describe_from_name=True)
    catalogue = read_catalogue(config)
    assert catalogue[CATEGORY].to_list() == ["Navigation", NO_CATEGORY]
    assert catalogue[DESCRIPTION].to_list() == ["edit: go to definition (category Navigation)", "file: exit"]


def test_describe_command():
    assert (
        describe_command("View.Solution Explorer", "Navigation.Unstructured")
        == "view: solution explorer (category Navigation.Unstructured)"
    )
    assert describe_command("TSqlEditorDatabaseCombo", None) == "tsql editor database combo"


def test_real_vs_logs(vs_dir):
    from cmdrec.config import load_data_config

    # the VS preset is configs/data/vs.yaml, defined once
    config = load_data_config(
        "configs/data/vs.yaml",
        [f"source.path={vs_dir}/BlazeData_Dev_*.csv.gz", f"catalogue.path={vs_dir}/MessageList.csv"],
    )
    events, report = read_events(config.source)
    catalogue = read_catalogue(config.catalogue)
    assert report.files == 99
    assert events.height == 2_745_281
    assert events[TIME].null_count() == 0
    assert catalogue.height == 463


# ---------------------------------------------------------------- inputs that used to lose data silently


def test_epoch_milliseconds_read_as_seconds_are_refused_naming_the_row_and_the_unit(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,1700000000000,A\nu1,1700000060000,B\n")
    with pytest.raises(InputError, match=r"log.csv, row 1, field 'time'.*outside 1971-2100.*timestamp_unit='s'"):
        read_events(source(path))
    events, _ = read_events(source(path, timestamp_unit="ms"))
    assert events[TIME].dt.year().to_list() == [2023, 2023]
    assert (events[TIME][1] - events[TIME][0]).total_seconds() == 60


def test_epoch_units_from_a_parquet_integer_column(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u1"], "time": [1_700_000_000_000_000], "cmd": ["A"]}).write_parquet(path)
    events, _ = read_events(source(path, timestamp_unit="us"))
    assert events[TIME][0].year == 2023


def test_a_missing_session_id_is_a_bad_row_not_a_new_session(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd,sid\nu1,2024-01-01 10:00:00,A,s1\nu1,2024-01-01 10:00:05,B,\n")
    with pytest.raises(InputError, match=r"row 2, field 'sid': value is empty"):
        read_events(source(path, session_column="sid"))
    events, report = read_events(source(path, session_column="sid", on_bad_rows="skip"))
    assert events.height == 1 and report.bad_rows == {"empty sid": 1}


def test_a_nul_byte_in_a_command_is_refused_or_skipped_and_counted(tmp_path):
    path = write(tmp_path / "log.csv", "user,time,cmd\nu1,2024-01-01 10:00:00,Wa\x00ll\nu1,2024-01-01 10:00:05,B\n")
    with pytest.raises(InputError, match=r"row 1, field 'cmd': value contains a control character: 'Wa\\x00ll'"):
        read_events(source(path))
    events, report = read_events(source(path, on_bad_rows="skip"))
    assert events[COMMAND].to_list() == ["B"] and report.bad_rows == {"control character in cmd": 1}


def test_surrounding_whitespace_is_stripped_and_counted_in_log_and_catalogue(tmp_path):
    log = write(
        tmp_path / "log.csv",
        "user,time,cmd\nu1,2024-01-01 10:00:00, Wall\nu1,2024-01-01 10:00:05,Wall \nu1 ,2024-01-01 10:00:09,Wall\n",
    )
    events, report = read_events(source(log))
    assert events[COMMAND].unique().to_list() == ["Wall"] and events[USER].unique().to_list() == ["u1"]
    assert report.to_dict()["values_stripped"] == {"cmd": 2, "user": 1}
    kept, _ = read_events(source(log, strip_whitespace=False))
    assert kept[COMMAND].n_unique() == 3

    catalogue_path = write(tmp_path / "cat.csv", "command,category\n Wall ,Model\n")
    catalogue_report = LoadReport()
    catalogue = read_catalogue(CatalogueConfig(path=str(catalogue_path), description_column=None), catalogue_report)
    assert catalogue[COMMAND].to_list() == ["Wall"] and catalogue_report.stripped == {"command": 1}


@pytest.mark.parametrize("marker", ["NULL", "NA", "NaN"])
def test_null_markers_are_missing_in_the_log_as_in_the_catalogue(tmp_path, marker):
    path = write(tmp_path / "log.csv", f"user,time,cmd\nu1,2024-01-01 10:00:00,A\nu1,2024-01-01 10:00:05,{marker}\n")
    with pytest.raises(InputError, match=r"row 2, field 'cmd': value is empty"):
        read_events(source(path))
    events, _ = read_events(source(path, null_values=()))
    assert events[COMMAND].to_list() == ["A", marker]
    assert CatalogueConfig().null_values == SourceConfig().null_values


def test_a_parquet_list_column_is_refused_naming_file_and_column(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u1"], "time": ["2024-01-01 10:00:00"], "cmd": [["A", "B"]]}).write_parquet(path)
    with pytest.raises(InputError, match=r"log.parquet: column\(s\) \['cmd'\] hold lists"):
        read_events(source(path))


def test_hour_and_weekday_come_from_the_local_clock_when_times_carry_an_offset(tmp_path):
    from cmdrec.data.derived import derive_continuous
    from cmdrec.data.sessions import split_sessions

    # 23:30 on Sunday in UTC+02:00 is 21:30 UTC the same day; the person's evening, not UTC's
    path = write(
        tmp_path / "log.csv", "user,time,cmd\nu1,2024-01-07T23:30:00+02:00,A\nu1,2024-01-08T00:10:00+02:00,B\n"
    )
    events, _ = read_events(source(path))
    assert events[TIME].to_list()[0].hour == 21  # stored as naive UTC, as every other log
    features = derive_continuous(split_sessions(events, 30), ("hour", "weekday", "log_time_delta"))
    assert features["hour"].to_list() == [23.5, pytest.approx(0 + 10 / 60)]
    assert features["weekday"].to_list() == [7.0, 1.0]
    mixed = write(tmp_path / "mixed.csv", "user,time,cmd\nu1,2024-01-07T23:30:00+02:00,A\nu1,2024-01-08T00:10:00,B\n")
    with pytest.raises(InputError, match=r"row 2, field 'time': some times carry a UTC offset and others do not"):
        read_events(source(mixed))


def test_native_readers_give_the_frames_of_the_diagnostic_path(tmp_path):
    from cmdrec.data import files

    csv_path = write(tmp_path / "log.csv", 'user,cmd,note\nu1,Open,"a, quoted"\nu2,Save,\n')
    raw = csv_path.read_bytes()
    native = files._read_csv_native(csv_path, ",", True, None)
    diagnostic = files._read_csv_row_by_row(csv_path, raw, LoadReport(), False, ",", True, None)
    assert native is not None and native.equals(diagnostic.with_columns(pl.col("note").replace("", None)))

    lines = [{"user": "u1", "cmd": "Open", "n": 1, "ok": True}, {"user": "u2", "cmd": "Save", "n": 2.5}]
    raw = "\n".join(json.dumps(line) for line in lines).encode()
    native = files._read_jsonl_native(raw)
    assert native is not None
    assert native.equals(files._read_jsonl(tmp_path / "x.jsonl", raw, LoadReport(), False))
    assert files._read_jsonl_native(b'{"user": "u1", "cmd": {"nested": 1}}\n') is None  # kept as JSON text
    assert files._read_jsonl_native(b'{"user": "u1"}\n\n{"user": "u2"}\n') is None  # rows numbered as the file
