"""The presets' recorded page views (`ptfer_app.views`): storage that gives back what was stored, keys that name
one call exactly, and a store that serves only the calls it recorded."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ptfer_app import views


def round_trip(value):
    stored, _ = views.decode_views(views.encode_views({"k": value}))
    return views._decode(*stored["k"])


def test_stored_views_come_back_as_they_were():
    frame = pd.DataFrame({"vector": ["V1", "V1"], "rank": [1, 2], "token": ["Paris", "▁Lyon"], "cosine": [0.5, 0.25]})
    value = {
        "frame": frame,
        "xy": np.arange(6, dtype=np.float64).reshape(3, 2) / 7,
        "shown": np.array([0, 5, 9]),
        "answers": [("Paris", 0.087), ("Lyon", 1e-9)],
        "explained": [0.31, 0.12],
        "none": None,
        "nan": float("nan"),
        "words": ["a", "b"],
    }
    back = round_trip(value)
    pd.testing.assert_frame_equal(back["frame"], frame)
    assert back["xy"].dtype == np.float64 and np.array_equal(back["xy"], value["xy"])
    assert np.array_equal(back["shown"], value["shown"])
    assert back["answers"] == value["answers"] and isinstance(back["answers"][0], tuple)
    assert back["explained"] == [0.31, 0.12] and back["none"] is None and math.isnan(back["nan"])
    assert back["words"] == ["a", "b"]


def test_a_long_float_list_is_stored_as_float32_only_when_that_loses_nothing():
    exact = np.random.default_rng(0).normal(size=100).astype(np.float32).astype(np.float64).tolist()
    assert round_trip(exact) == exact
    arrays: dict = {}
    views._encode(exact, arrays)
    assert next(iter(arrays.values())).dtype == np.float32
    precise = (np.arange(100) / 3).tolist()  # not float32 values
    assert round_trip(precise) == precise
    arrays = {}
    views._encode(precise, arrays)
    assert next(iter(arrays.values())).dtype == np.float64


def test_each_use_gets_its_own_copy():
    stored, _ = views.decode_views(views.encode_views({"k": {"xy": np.zeros(3), "words": ["a"]}}))
    first = views._decode(*stored["k"])
    first["xy"][0] = 5
    first["words"].append("b")
    assert views._decode(*stored["k"]) == {"xy": pytest.approx(np.zeros(3)), "words": ["a"]}


@pytest.mark.parametrize(
    "value",
    [
        object(),
        np.array(1.5),  # a 0-d array would come back with one dimension
        pd.DataFrame({"a": [1]}, index=["x"]),  # its index would be lost
        pd.DataFrame({0: [1]}),  # its column name would come back a string
    ],
    ids=["object", "0-d array", "frame with an index", "int column"],
)
def test_what_would_not_come_back_as_it_was_is_refused(value):
    with pytest.raises(TypeError, match="cannot hold"):
        views.encode_views({"k": value})


def test_an_unknown_kind_in_a_file_is_an_error_not_a_dict():
    with pytest.raises(ValueError, match="unknown kind"):
        views._decode({"__set__": [1]}, {})


def test_keys_name_models_settings_and_data_not_vectors_or_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "relations.jsonl").write_text('{"relation": "P1"}\n')
        (tmp_path / d / "common_vocab_cased.txt").write_text("Paris\nLyon\n")
    args = {"model": "gemma3-270m", "prompt_key": "abc", "_vectors": object(), "k": 8, "data_dir": str(tmp_path / "a")}
    key = views.view_key("nearest_table", args)
    assert key == views.view_key("nearest_table", {**args, "_vectors": object(), "data_dir": str(tmp_path / "b")})
    described = views.described_call("nearest_table", args)
    assert "_vectors" not in described and str(tmp_path) not in described and '"k": 8' in described
    assert key == views.view_key("nearest_table", dict(reversed(args.items()))), "whatever the arguments' order"
    assert key != views.view_key("nearest_table", {**args, "k": 9})
    assert key != views.view_key("nearest_table", {**args, "prompt_key": "abd"})
    assert key != views.view_key("top_answers", args)
    (tmp_path / "b" / "common_vocab_cased.txt").write_text("Paris\n")
    assert key != views.view_key("nearest_table", {**args, "data_dir": str(tmp_path / "b")}), "other data, no view"
    assert views.view_key("nearest_table", {**args, "model": "/my/checkpoint"}) is None, "a path names no weights"
    with pytest.raises(TypeError, match="do not know what its argument 'folder' identifies"):
        views.view_key("nearest_table", {**args, "folder": "/data"})
    spec = (("tiny-demo-bert", "/my/checkpoint"), None, "frequency", "all", str(tmp_path / "a"))
    assert views.view_key("anchor_summary", {"anchor_spec": spec}) is None


def test_the_store_serves_only_recorded_calls_and_records_while_recording(tmp_path, monkeypatch):
    calls = []

    @views.recorded
    def square(model: str, x: int, _note=None) -> dict:
        calls.append(x)
        return {"y": np.array([x * x])}

    monkeypatch.setattr(views, "PLAIN_ARGS", (*views.PLAIN_ARGS, "x"))
    store = views.Views(tmp_path)
    monkeypatch.setattr(views, "STORE", store)
    store.recording = {}
    assert square("tiny-demo-bert", 3)["y"][0] == 9 and calls == [3]
    recorded, store.recording = store.recording, None
    assert store.recorded_models == {"tiny-demo-bert"}
    views.write_views(tmp_path / "preset", recorded, store.recorded_models)
    assert (tmp_path / "preset" / views.FILE).exists() and not list((tmp_path / "preset").glob(".*tmp"))
    assert square("tiny-demo-bert", 3, _note="unhashed")["y"][0] == 9 and calls == [3], "served from the file"
    assert square("tiny-demo-bert", 4)["y"][0] == 16 and calls == [3, 4], "a call not recorded runs"
    assert square("/a/path", 3)["y"][0] == 9 and calls == [3, 4, 3], "a model by path is never served"


def test_views_are_not_served_for_other_weights_and_a_damaged_file_costs_only_its_views(tmp_path, monkeypatch):
    """A preset's views name the weights they were computed with: where a model they name is on this machine with
    other weights, none is served. An unreadable file is skipped (its pages compute live), not an error."""
    monkeypatch.setattr(views, "PLAIN_ARGS", (*views.PLAIN_ARGS, "x"))

    @views.recorded
    def double(model: str, x: int) -> int:
        return 2 * x

    key = views.view_key("double", {"model": "gemma3-270m", "x": 1})
    data = views.encode_views({key: 99}, {"gemma3-270m": "gemma3-270m@aaaa"})
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / views.FILE).write_bytes(data)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / views.FILE).write_bytes(data[:40])
    monkeypatch.setattr(views, "STORE", views.Views(tmp_path))
    for here, served in (("gemma3-270m", 99), ("gemma3-270m@aaaa", 99), ("gemma3-270m@bbbb", 2)):
        monkeypatch.setattr(views, "local_identity", lambda name, here=here: here)
        views.STORE.forget()
        assert double("gemma3-270m", 1) == served, here  # absent, the same weights, other weights
