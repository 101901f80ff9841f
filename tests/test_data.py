"""Dataset sources on real faces and on synthetic copies of the FairFace hub schema."""

from __future__ import annotations

import io
from collections import Counter

import datasets
import pytest
from PIL import Image

from vlmface.data import decode_image, load_samples
from vlmface.errors import DataError, SampleError, SpecError
from vlmface.tasks import load_task

# The order of HuggingFaceM4/FairFace's ClassLabels (published-numbers.md).
HF_RACE = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
HF_AGE = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]


def _jpeg(color=(120, 80, 60), size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def fairface_like(rows, race_names=HF_RACE, gender_names=("Male", "Female")) -> datasets.Dataset:
    """A tiny dataset with FairFace's hub schema: image + ClassLabel ints."""
    features = datasets.Features({
        "image": datasets.Image(),
        "age": datasets.ClassLabel(names=HF_AGE),
        "gender": datasets.ClassLabel(names=list(gender_names)),
        "race": datasets.ClassLabel(names=list(race_names)),
        "service_test": datasets.Value("bool"),
    })
    columns = {"image": [], "age": [], "gender": [], "race": [], "service_test": []}
    for i, (age, gender, race) in enumerate(rows):
        columns["image"].append({"bytes": _jpeg((i * 40 % 255, 90, 60)), "path": None})
        columns["age"].append(HF_AGE.index(age))
        columns["gender"].append(list(gender_names).index(gender))
        columns["race"].append(list(race_names).index(race))
        columns["service_test"].append(False)
    return datasets.Dataset.from_dict(columns, features=features)


ROWS = [("20-29", "Male", "East Asian"), ("3-9", "Female", "Southeast Asian"),
        ("more than 70", "Female", "Latino_Hispanic"), ("40-49", "Male", "White")]


def _check_rows(samples):
    by_row = {s.meta["row"]: s.labels for s in samples}
    assert by_row[0] == {"race7": "East Asian", "gender": "Male", "age9": "20-29",
                         "race6": "Asian", "age5": "20-39"}
    assert by_row[1]["race6"] == "Asian" and by_row[1]["age5"] == "0-9" and by_row[1]["gender"] == "Female"
    assert by_row[2]["race7"] == "Latino_Hispanic" and by_row[2]["age5"] == "60+"
    assert by_row[3]["race6"] == "White" and by_row[3]["age5"] == "40-59"


def test_fairface_parquet_copy_maps_labels_by_name(tmp_path):
    (tmp_path / "0.25").mkdir()
    fairface_like(ROWS).to_parquet(str(tmp_path / "0.25" / "validation-00000-of-00001.parquet"))
    fairface_like(ROWS[:1]).to_parquet(str(tmp_path / "0.25" / "train-00000-of-00001.parquet"))
    data = load_samples(load_task("fairface"), data_dir=tmp_path)
    assert len(data.samples) == 4  # the validation file only
    _check_rows(data.samples)
    image = data.samples[0].load_image()
    assert image.mode == "RGB" and image.size == (32, 32)


def test_mirror_with_another_class_order_gives_the_same_labels(tmp_path):
    """Like nateraw/fairface, where 0 = Female: integer order must never matter."""
    reordered = fairface_like(ROWS, race_names=list(reversed(HF_RACE)), gender_names=("Female", "Male"))
    reordered.save_to_disk(str(tmp_path / "copy"))
    data = load_samples(load_task("fairface"), data_dir=tmp_path / "copy")
    _check_rows(data.samples)


def test_unmappable_class_names_fail_before_any_model(tmp_path):
    renamed = fairface_like(ROWS, race_names=[n.replace("Indian", "South Asian") for n in HF_RACE])
    renamed.save_to_disk(str(tmp_path / "copy"))
    with pytest.raises(SpecError, match=r"race7.*\['South Asian'\].*values\.race7"):
        load_samples(load_task("fairface"), data_dir=tmp_path / "copy")


def test_plain_integer_codes_need_an_explicit_mapping(tmp_path):
    plain = fairface_like(ROWS).cast_column("race", datasets.Value("int64"))
    plain.save_to_disk(str(tmp_path / "copy"))
    with pytest.raises(SpecError, match=r"'race'.*integer codes.*values\.race7"):
        load_samples(load_task("fairface"), data_dir=tmp_path / "copy")


def test_offline_hub_gives_a_clear_message():
    with pytest.raises(DataError) as err:
        load_samples(load_task("fairface"))
    message = str(err.value)
    assert "HuggingFaceM4/FairFace" in message and "--data-dir" in message and "offline" in message


def test_utkface_real_names_and_the_two_malformed_files(utkface_dir):
    data = load_samples(load_task("utkface"), data_dir=utkface_dir)
    assert len(data.samples) == 9778
    assert sorted(item for item, _ in data.skipped) == [
        "61_1_20170109142408075.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg"]
    counts = Counter((s.labels["gender"], s.labels["race5"]) for s in data.samples)
    assert counts[("Male", "White")] == 2451 and counts[("Female", "Others")] == 648
    sample = next(s for s in data.samples if s.id == "100_1_0_20170110183726390.jpg.chip.jpg")
    assert sample.labels == {"age": 100, "gender": "Female", "race5": "White", "age5": "60+",
                             "age9": "more than 70"}


def test_fer2013_folder_labels_and_tiny_grayscale_images(fer_dir):
    data = load_samples(load_task("fer2013"), data_dir=fer_dir)
    assert Counter(s.labels["emotion"] for s in data.samples) == {
        "angry": 491, "disgust": 55, "fear": 528, "happy": 879, "neutral": 626, "sad": 594, "surprise": 416}
    image = data.samples[0].load_image()
    assert image.mode == "RGB" and image.size == (48, 48)


def test_image_folder_reports_unknown_folders(tmp_path):
    for folder in ("happy", "contempt"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.jpg").write_bytes(_jpeg())
    data = load_samples(load_task("fer2013"), data_dir=tmp_path)
    assert [s.id for s in data.samples] == ["happy/a.jpg"]
    assert data.skipped[0][0] == "contempt/a.jpg" and "values.emotion" in data.skipped[0][1]


def test_manifest_with_explicit_integer_codes(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(_jpeg())
    (tmp_path / "labels.csv").write_text("image,expression,subject\nimg/0.jpg,7,a\nimg/1.jpg,0,b\nimg/2.jpg,6,c\n")
    data = load_samples(load_task("affectnet"), source_name="manifest", data_dir=tmp_path / "labels.csv")
    assert [s.labels["emotion"] for s in data.samples] == ["contempt", "neutral", "anger"]
    assert data.samples[0].meta["subject"] == "a"


def test_manifest_missing_column_and_missing_dir(tmp_path):
    (tmp_path / "m.csv").write_text("path,emotion\nx.jpg,happy\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['image'\]"):
        load_samples(load_task("fer2013"), source_name="manifest", data_dir=tmp_path / "m.csv")
    with pytest.raises(DataError, match="no such file or folder"):
        load_samples(load_task("fer2013"), data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="pass --data-dir"):
        load_samples(load_task("fer2013"))


def test_empty_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no usable samples"):
        load_samples(load_task("utkface"), data_dir=tmp_path)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "I;16", "1"])
def test_every_image_mode_becomes_rgb(mode):
    buffer = io.BytesIO()
    image = Image.new(mode, (48, 48))
    image.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    decoded = decode_image(buffer.getvalue(), "x")
    assert decoded.mode == "RGB" and decoded.size == (48, 48)


def test_corrupt_truncated_and_empty_images_are_sample_errors():
    good = _jpeg(size=(64, 64))
    with pytest.raises(SampleError, match="bad.jpg: not a readable image"):
        decode_image(b"definitely not a jpeg", "bad.jpg")
    with pytest.raises(SampleError, match="corrupt or truncated"):
        decode_image(good[: len(good) // 2], "half.jpg")
    with pytest.raises(SampleError, match="empty"):
        decode_image(b"", "empty.jpg")


def test_a_data_dir_one_level_too_high_names_the_folder_to_pass(fer_dir):
    with pytest.raises(DataError, match=r"one level down: --data-dir .*fer2013/PrivateTest\?"):
        load_samples(load_task("fer2013"), data_dir=fer_dir.parent)
