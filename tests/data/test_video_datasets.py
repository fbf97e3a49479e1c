"""The video dataset parsers, on fixture trees built with the real naming rules and .mat
structure (tests/video_trees.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil

import numpy as np
import pytest
from video_trees import (
    DUKEV_SPEC,
    MARS_QUERY,
    MARS_TEST,
    MARS_TRAIN,
    mars_name,
    write_duke_video,
    write_frames,
    write_ilids,
    write_mars,
    write_prid,
)

from reidkit.data import load_dataset
from reidkit.data.sample import Tracklet
from reidkit.errors import DataError, MissingInputError, UsageError


def names(tracklet: Tracklet) -> list[str]:
    return [os.path.basename(p) for p in tracklet.paths]


# --- MARS -------------------------------------------------------------------------------


def test_mars_tracks_are_one_based_inclusive_rows_and_query_idx_picks_the_queries(tmp_path):
    write_mars(tmp_path)
    ds = load_dataset("mars", tmp_path)
    assert ds.kind == "tracklet" and ds.camera_base == 1 and ds.zero_is_distractor
    # train: every track, pids relabelled in sorted order (1, 4, 6 -> 0, 1, 2)
    assert [(t.pid, t.camid, t.frames) for t in ds.train] == [
        ({1: 0, 4: 1, 6: 2}[p], c - 1, n) for p, c, n in MARS_TRAIN
    ]
    assert names(ds.train[1]) == [mars_name(1, 2, 2, f) for f in (1, 2, 3, 4)]
    assert ds.train[1].paths[0] == str(tmp_path / "mars/bbox_train/0001/0001C2T0002F001.jpg")
    # query: the test rows at query_IDX (1-based in the file); gallery: the other rows,
    # pid 0 kept as a distractor, pid -1 kept apart as junk
    expected_query = [MARS_TEST[i] for i in MARS_QUERY]
    assert [(t.pid, t.camid + 1, t.frames) for t in ds.query] == expected_query
    rest = [t for i, t in enumerate(MARS_TEST) if i not in MARS_QUERY]
    assert [(t.pid, t.camid + 1, t.frames) for t in ds.gallery] == [r for r in rest if r[0] != -1]
    assert [(t.pid, t.frames) for t in ds.junk["gallery"]] == [(-1, 2)]
    assert names(ds.gallery[0]) == [mars_name(2, 4, 2, 1), mars_name(2, 4, 2, 2)]
    assert ds.junk["gallery"][0].path.endswith("bbox_test/00-1/00-1C2T0007F001.jpg")


def test_mars_summary_counts_tracklets_and_frames(tmp_path, cli):
    write_mars(tmp_path)
    code, out, _ = cli("datasets", "summary", "mars", "--root", tmp_path, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["kind"] == "tracklet"
    assert summary["subsets"]["train"] == {
        "ids": 3, "tracklets": 5, "frames": 17, "min_frames": 2, "median_frames": 3,
        "max_frames": 5, "cameras": 4,
    }  # fmt: skip
    assert summary["subsets"]["gallery"] == {
        "ids": 3, "tracklets": 4, "frames": 11, "min_frames": 2, "median_frames": 3,
        "max_frames": 4, "cameras": 4,
    }  # fmt: skip
    assert summary["junk_tracklets"] == 1 and summary["unparsed_files"] == 0
    code, out, err = cli("datasets", "summary", "mars", "--root", tmp_path)
    table = out + err
    assert code == 0 and "# tracklets" in table and "# frames" in table
    assert "frames min/med/max" in table and "2 / 3 / 5" in table and "junk tracklets: 1" in table


def test_mars_missing_info_file_is_named(tmp_path, cli):
    folder = write_mars(tmp_path)
    (folder / "info" / "query_IDX.mat").unlink()
    code, _, err = cli("datasets", "summary", "mars", "--root", tmp_path)
    assert code == 2
    assert f"error: mars: {folder / 'info/query_IDX.mat'} is missing" in err


def test_mars_row_of_another_pid_is_an_error_naming_the_row(tmp_path):
    from scipy.io import savemat

    folder = write_mars(tmp_path)
    rows = [[1, 3, 1, 1], [3, 7, 1, 2]]  # row 2 starts inside track 1: frame of camera 1
    savemat(folder / "info/tracks_train_info.mat", {"track_train_info": np.array(rows, float)})
    with pytest.raises(DataError) as err:
        load_dataset("mars", tmp_path)
    assert err.value.message == (
        "info/tracks_train_info.mat row 2: frame 0001C1T0001F003.jpg is not of pid 1 in camera 2"
    )


def test_mars_rows_outside_the_name_list_and_missing_frames(tmp_path):
    from scipy.io import savemat

    folder = write_mars(tmp_path)
    savemat(folder / "info/tracks_train_info.mat", {"track_train_info": np.array([[16, 18, 6, 6]])})
    with pytest.raises(DataError, match=r"row 1: frames 16\.\.18 are outside the 17 names"):
        load_dataset("mars", tmp_path)
    write_mars(tmp_path)
    (folder / "bbox_test/0003/0003C2T0004F002.jpg").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("mars", tmp_path)
    assert "row 4: frame 0003C2T0004F002.jpg is not in" in err.value.message
    assert err.value.hint == "is the archive fully extracted?"


def test_mars_query_rows_out_of_range(tmp_path):
    from scipy.io import savemat

    folder = write_mars(tmp_path)
    savemat(folder / "info/query_IDX.mat", {"query_IDX": np.array([[1, 8]])})
    with pytest.raises(DataError, match="query rows must be 1 to 7"):
        load_dataset("mars", tmp_path)


# --- DukeMTMC-VideoReID -----------------------------------------------------------------


@pytest.mark.parametrize("old", [False, True])
def test_duke_video_tracklets_in_frame_order(tmp_path, old):
    base = write_duke_video(tmp_path, old=old, first=2)
    ds = load_dataset("dukemtmcvidreid", tmp_path)
    assert ds.kind == "tracklet" and ds.root == base
    for subset in ("train", "query", "gallery"):
        got = [(t.pid, t.camid + 1, t.frames) for t in ds.subset(subset)]
        spec = DUKEV_SPEC[subset]
        if subset == "train":
            spec = [({5: 0, 9: 1}[p], c, n) for p, c, n in spec]
        assert got == spec, subset
    frames = [int(n.split("F")[1][:4]) for n in names(ds.gallery[0])]
    assert frames == [2, 3, 4, 5]  # written in reverse, read in frame order
    assert ds.summary()["subsets"]["gallery"]["ids"] == 3


def test_duke_video_stray_frames_are_reported_and_mixed_cameras_refused(tmp_path):
    base = write_duke_video(tmp_path)
    write_frames(base / "train/0005/0001", ["0006_C1_F0009_X1.jpg", "notes.jpg"])
    ds = load_dataset("dukemtmcvidreid", tmp_path)
    assert ds.train[0].frames == 3 and len(ds.unparsed) == 2
    write_frames(base / "query/0011/0001", ["0011_C4_F0009_X30823.jpg"])
    with pytest.raises(DataError, match="camera 4 in a tracklet of camera 1"):
        load_dataset("dukemtmcvidreid", tmp_path)


def test_duke_video_missing_subset_folder(tmp_path):
    base = write_duke_video(tmp_path)
    shutil.rmtree(base / "gallery")
    with pytest.raises(MissingInputError, match=r"expected folder\(s\) gallery in"):
        load_dataset("dukemtmcvidreid", tmp_path)


# --- iLIDS-VID --------------------------------------------------------------------------

ILIDS_SPLITS = [[1, 4, 5, 2, 3, 6], [2, 3, 6, 1, 4, 5]]  # first half: the test persons


def test_ilids_splits_come_from_the_authors_mat(tmp_path):
    write_ilids(tmp_path, splits=ILIDS_SPLITS)
    ds = load_dataset("ilidsvid", tmp_path)
    assert ds.kind == "tracklet" and ds.name == "ilidsvid"
    assert [(t.pid, t.camid) for t in ds.query] == [(1, 0), (4, 0), (5, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(1, 1), (4, 1), (5, 1)]
    assert ds.pid_map == {(0, 2): 0, (0, 3): 1, (0, 6): 2}
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    # frames (person 1 has 3 + 1 in camera 1), named by their 5-digit frame numbers
    assert names(ds.query[0]) == [f"cam1_person001_{100 + 7 * f:05d}.png" for f in range(4)]
    other = load_dataset("ilidsvid@1", tmp_path)
    assert other.name == "ilidsvid@1" and [t.pid for t in other.query] == [2, 3, 6]
    assert not (tmp_path / "ilids-vid/splits.json").exists()


def test_ilids_without_the_mat_draws_seeded_splits_once_and_reads_them_back(tmp_path):
    folder = write_ilids(tmp_path)
    ds = load_dataset("ilidsvid@3", tmp_path)
    stored = json.loads((folder / "splits.json").read_text())
    assert stored["seed"] == 0 and len(stored["splits"]) == 10
    split = stored["splits"][3]
    assert len(split["test"]) == 3 and sorted(split["train"] + split["test"]) == [
        f"person{p:03d}" for p in range(1, 7)
    ]  # person folder names: the file stays valid wherever the folder moves
    assert sorted(t.pid for t in ds.query) == sorted(int(p[-3:]) for p in split["test"])
    # the same splits on another machine (another folder, same seed) ...
    again = write_ilids(tmp_path / "copy")
    load_dataset("ilidsvid", tmp_path / "copy")
    assert json.loads((again / "splits.json").read_text())["splits"] == stored["splits"]
    # ... and the stored file is what later parses read
    stored["splits"][0] = {"train": ["person001", "person002"], "test": ["person005"]}
    (folder / "splits.json").write_text(json.dumps(stored))
    assert [t.pid for t in load_dataset("ilidsvid", tmp_path).query] == [5]
    assert len({json.dumps(s) for s in stored["splits"]}) > 1  # not ten copies of one split


def test_ilids_bad_inputs(tmp_path, cli):
    folder = write_ilids(tmp_path)
    code, _, err = cli("datasets", "summary", "ilidsvid@10", "--root", tmp_path)
    assert code == 2 and "ilidsvid@10: the split must be 0 to 9" in err
    shutil.rmtree(folder / "i-LIDS-VID/sequences/cam2/person004")
    with pytest.raises(DataError, match="person004 has a sequence in one camera only"):
        load_dataset("ilidsvid", tmp_path)
    write_ilids(tmp_path)
    (folder / "splits.json").write_text(
        json.dumps([{"train": ["person001"], "test": ["person099"]}])
    )
    with pytest.raises(DataError, match="split 0 names person099, which is not a person"):
        load_dataset("ilidsvid", tmp_path)


# --- PRID2011 ---------------------------------------------------------------------------


def test_prid_keeps_persons_with_22_frames_in_both_cameras(tmp_path):
    frames = {
        "a": {1: 22, 2: 30, 3: 21, 4: 25, 5: 40, 6: 22, 7: 50},
        "b": {1: 23, 2: 22, 3: 60, 4: 10, 5: 22, 6: 30, 8: 40},
    }  # 3 and 4 have 21 / 10 frames in one camera, 7 and 8 are in one camera only
    folder = write_prid(tmp_path, frames)
    ds = load_dataset("prid2011", tmp_path)
    split = json.loads((folder / "splits.json").read_text())["splits"][0]
    kept = sorted(split["train"] + split["test"])
    assert kept == ["person_0001", "person_0002", "person_0005", "person_0006"]
    assert len(split["test"]) == 2
    assert [t.camid for t in ds.query] == [0, 0] and [t.camid for t in ds.gallery] == [1, 1]
    for t in ds.query + ds.gallery:
        assert t.frames == frames["ab"[t.camid]][t.pid]
    assert names(ds.query[0])[:3] == ["0001.png", "0002.png", "0003.png"]


def test_prid_reads_torchreids_split_file_when_present(tmp_path):
    folder = write_prid(tmp_path, {"a": {1: 22, 2: 22, 3: 22}, "b": {1: 22, 2: 22, 3: 22}})
    splits = [{"train": ["person_0001", "person_0003"], "test": ["person_0002"]}]
    (folder / "splits_prid2011.json").write_text(json.dumps(splits))
    ds = load_dataset("prid2011", tmp_path)
    assert [t.pid for t in ds.query] == [2] and ds.num_train_pids == 2
    assert not (folder / "splits.json").exists()
    with pytest.raises(DataError, match="split 4 asked for, the splits file holds 1"):
        load_dataset("prid2011@4", tmp_path)


def test_prid_with_too_few_persons(tmp_path):
    write_prid(tmp_path, {"a": {1: 30}, "b": {1: 30, 2: 30}})
    with pytest.raises(DataError, match=r"1 person\(s\) have 22\+ frames in both cameras"):
        load_dataset("prid2011", tmp_path)


# --- a folder or a manifest of one's own ------------------------------------------------


def test_folder_of_tracklet_folders(tmp_path):
    base = tmp_path / "mine"
    write_frames(base / "train/0003_c1_t1", ["f10.jpg", "f9.jpg", "f11.jpg"])
    write_frames(base / "train/0003_c2_t2", ["a.jpg"])
    write_frames(base / "query/0007_c1_x", ["1.jpg", "2.jpg"])
    write_frames(base / "gallery/0007_c2_x", ["1.jpg"])
    write_frames(base / "gallery/0000_c1_x", ["1.jpg"])
    write_frames(base / "gallery/readme_folder", ["1.jpg"])
    (base / "gallery/empty_c1").mkdir()
    ds = load_dataset(str(base))
    assert ds.kind == "tracklet"
    assert [(t.pid, t.camid, names(t)) for t in ds.train] == [
        (0, 0, ["f9.jpg", "f10.jpg", "f11.jpg"]),
        (0, 1, ["a.jpg"]),
    ]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(0, 0), (7, 1)]
    assert sorted(os.path.basename(p) for p in ds.unparsed) == ["empty_c1", "readme_folder"]


def test_manifest_with_a_tracklet_column(tmp_path):
    manifest = tmp_path / "video.csv"
    manifest.write_text(
        "tracklet,path,pid,camid,subset\n"
        "a,x/1.jpg,4,0,train\n"
        "b,x/5.jpg,4,1,train\n"
        "a,x/2.jpg,4,0,train\n"
        "a,y/9.jpg,8,1,query\n"  # tracklet ids are per subset
        "c,y/3.jpg,8,0,gallery\n"
        "c,y/4.jpg,8,0,gallery\n"
    )
    ds = load_dataset(str(manifest))
    assert ds.kind == "tracklet"
    assert [(t.pid, t.camid, names(t)) for t in ds.train] == [
        (0, 0, ["1.jpg", "2.jpg"]),
        (0, 1, ["5.jpg"]),
    ]  # frames in row order
    assert ds.train[0].paths[0] == str(tmp_path / "x/1.jpg")
    assert [(t.pid, t.frames) for t in ds.query + ds.gallery] == [(8, 1), (8, 2)]
    assert ds.summary()["subsets"]["gallery"]["frames"] == 2


def test_manifest_tracklet_rows_must_agree(tmp_path):
    manifest = tmp_path / "video.csv"
    manifest.write_text("path,pid,camid,subset,tracklet\na.jpg,1,0,train,t\nb.jpg,1,2,train,t\n")
    with pytest.raises(UsageError) as err:
        load_dataset(str(manifest))
    assert err.value.message == (
        f"{manifest}:3: tracklet 't' has pid 1, camid 0 on line 2, here pid 1, camid 2"
    )
    manifest.write_text("path,pid,camid,tracklet\na.jpg,1,0,t\n")
    with pytest.raises(UsageError, match=":1: header: no subset column"):
        load_dataset(str(manifest))
    manifest.write_text("path,pid,camid,subset,clip\na.jpg,1,0,train,t\n")
    with pytest.raises(UsageError, match=":1: header: unknown column 'clip'"):
        load_dataset(str(manifest))


# --- synthreid-video --------------------------------------------------------------------


def digest(folder):
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.jpg"))
    }


@pytest.fixture(scope="module")
def video_tiny(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("synthvideo")
    generate(root, "video-tiny", seed=0, workers=2)
    return root


def test_synth_video_matches_its_preset_and_every_query_has_a_match(video_tiny):
    from reidkit.data.synth.video import PRESETS

    spec = PRESETS["video-tiny"]
    ds = load_dataset("synthreid-video", video_tiny)
    s = ds.summary()["subsets"]
    assert ds.kind == "tracklet" and ds.unparsed == []
    assert (s["train"]["ids"], s["train"]["tracklets"]) == (spec.train_ids, spec.train_tracklets)
    assert (s["query"]["ids"], s["query"]["tracklets"]) == (spec.test_ids, spec.test_ids)
    assert s["gallery"]["tracklets"] == spec.gallery_tracklets
    assert s["gallery"]["ids"] == spec.test_ids + spec.distractors
    for counts in s.values():
        assert spec.min_frames <= counts["min_frames"] <= counts["max_frames"] <= spec.max_frames
    matches = {(t.pid, t.camid) for t in ds.gallery}
    assert all(any(p == q.pid and c != q.camid for p, c in matches) for q in ds.query)
    assert not {t.pid for t in ds.query} & {ds_pid for ds_pid, _ in ds.pid_map}  # disjoint


def test_synth_video_frames_move_but_stay_one_person(video_tiny):
    """Consecutive frames of a tracklet differ (gait, drift), yet are closer to each other
    than to another identity's frames in the same camera."""
    from PIL import Image

    ds = load_dataset("synthreid-video", video_tiny)

    def thumb(path):
        with Image.open(path) as image:
            return np.asarray(image.resize((8, 16)), dtype=np.float32).ravel()

    within, across = [], []
    for a in ds.train:
        frames = [thumb(p) for p in a.paths]
        within += [np.linalg.norm(x - y) for x, y in itertools.pairwise(frames)]
        other = next(b for b in ds.train if b.camid == a.camid and b.pid != a.pid)
        across.append(np.linalg.norm(frames[0] - thumb(other.paths[0])))
    assert min(within) > 0  # no frozen tracklet
    assert np.mean(within) < 0.5 * np.mean(across)


def test_synth_video_is_deterministic_and_resumes_to_identical_files(video_tiny, tmp_path):
    from reidkit.data.synth import generate

    def stop_after_30(done, total):
        if done >= 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, "video-tiny", seed=0, workers=1, progress=stop_after_30)
    assert not (tmp_path / "synthreid-video").exists()
    result = generate(tmp_path, "video-tiny", seed=0, workers=2)
    assert result["resumed"] > 0 and result["rendered"] + result["resumed"] == result["images"]
    assert digest(tmp_path / "synthreid-video") == digest(video_tiny / "synthreid-video")
    generate(tmp_path / "other", "video-tiny", seed=1, workers=2)
    assert digest(tmp_path / "other/synthreid-video") != digest(video_tiny / "synthreid-video")


def test_synth_video_cli_reports_tracklets(tmp_path, cli):
    code, out, err = cli("datasets", "synth", "--root", tmp_path, "--preset", "video-tiny")
    assert code == 0 and "wrote 80 tracklets (552 frames)" in out + err
    code, out, _ = cli("datasets", "synth", "--root", tmp_path, "--preset", "video-tiny", "--json")
    result = json.loads(out)
    assert result["up_to_date"] and result["dataset"] == "synthreid-video"
    assert result["summary"]["kind"] == "tracklet" and result["images"] == 552
    code, _, err = cli("datasets", "synth", "--root", tmp_path, "--preset", "video-huge")
    assert code == 2 and "video-tiny, video-small" in err


def test_combine_video_datasets_round_trips_through_the_manifest(tmp_path, cli, market_tree):
    write_mars(tmp_path)
    write_duke_video(tmp_path)
    out = tmp_path / "both.csv"
    code, o, err = cli(
        "datasets", "combine", "mars", "dukemtmcvidreid", "--root", tmp_path, "--out", out, "--json"
    )
    result = json.loads(o)
    assert code == 0 and result["tracklets"] == len(MARS_TRAIN) + len(MARS_TEST) + sum(
        len(v) for v in DUKEV_SPEC.values()
    )
    assert out.read_text().splitlines()[0] == "path,pid,camid,subset,dataset,tracklet"
    ds = load_dataset(str(out))
    mars, duke = load_dataset("mars", tmp_path), load_dataset("dukemtmcvidreid", tmp_path)
    assert ds.kind == "tracklet" and ds.sources == ["mars", "dukemtmcvidreid"]
    assert [t.paths for t in ds.query] == [t.paths for t in mars.query + duke.query]
    assert [t.frames for t in ds.train] == [t.frames for t in mars.train + duke.train]
    assert ds.num_train_pids == mars.num_train_pids + duke.num_train_pids
    assert len(ds.junk["gallery"]) == 1  # MARS's junk tracklet travels as pid -1
    shutil.copytree(market_tree.root / "market1501", tmp_path / "market1501")
    code, _, err = cli(
        "datasets", "combine", "mars", "market1501", "--root", tmp_path, "--out", out
    )
    assert code == 2 and "cannot combine image and video datasets (mars holds tracklets)" in err


def test_ilids_installs_from_its_tar_with_the_layout_checked(tmp_path, cli):
    import tarfile

    src = write_ilids(tmp_path / "src", splits=ILIDS_SPLITS)
    archive = tmp_path / "iLIDS-VID.tar"
    with tarfile.open(archive, "w") as tar:  # the release's top level: i-LIDS-VID/, splits
        for top in ("i-LIDS-VID", "train-test people splits"):
            tar.add(src / top, arcname=top)
    root = tmp_path / "data"
    code, out, err = cli(
        "datasets", "download", "ilidsvid", "--archive", archive, "--root", root, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["dataset"] == "ilidsvid"
    ds = load_dataset("ilidsvid", root)
    assert [t.pid for t in ds.query] == [1, 4, 5] and ds.kind == "tracklet"
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(src / "i-LIDS-VID/sequences/cam1", arcname="i-LIDS-VID/sequences/cam1")
    code, _, err = cli("datasets", "download", "ilidsvid", "--archive", bad, "--root", root / "x")
    assert code == 1 and "does not hold the ilidsvid layout" in err and "cam2 is missing" in err
    assert not (root / "x" / "ilids-vid").exists()
