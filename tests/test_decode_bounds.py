"""Decoding with bounded memory (issue 13): a decompression bomb is one sample's error, a large
image is decoded reduced, 16-bit / 32-bit / float images are scaled to 8 bits, not clipped white.

Before: a 20000x20000 PNG among good faces ended `vlmface eval` with DecompressionBombError
(0 predictions, every rerun the same); a 16-bit PNG decoded all white.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmface.data.samples import DECODE_MAX_SIDE, DEFAULT_MAX_PIXELS, decode_image, default_max_pixels
from vlmface.errors import SampleError
from vlmface.decode import iter_batches
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate

BOMB_NAME = "30_0_0_20170101000000001.jpg.chip.jpg"  # a UTKFace name: a PNG bomb among the faces


def png_bomb(side: int) -> bytes:
    """A valid side x side all-black 8-bit grey PNG (a few MB), built without holding its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(1)
    rows_per_block = 1000
    block = b"\0" * ((side + 1) * rows_per_block)  # filter byte + pixels per row
    idat = b"".join(compressor.compress(block) for _ in range(side // rows_per_block))
    idat += compressor.compress(b"\0" * ((side + 1) * (side % rows_per_block))) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def faces(utkface_dir) -> list[Path]:
    return sorted(utkface_dir.glob("*.jpg"))[:6]


def _eval(data_dir: Path, out: Path, **kwargs):
    return evaluate(EvalConfig(task="utkface", model="baseline", data_dir=data_dir, out=out, progress=False,
                               score=False, attributes=["gender", "age"], **kwargs))


def test_bomb_among_good_faces_is_one_error_and_the_rest_answered(tmp_path, faces):
    data = tmp_path / "faces"
    data.mkdir()
    for face in faces:
        shutil.copy(face, data / face.name)
    (data / BOMB_NAME).write_bytes(png_bomb(20000))
    result = _eval(data, tmp_path / "out")
    records = read_records(result.run_dir / "predictions.jsonl")
    bomb = [r for r in records if r["sample_id"] == BOMB_NAME]
    assert [r["status"] for r in bomb] == ["error", "error"]
    message = bomb[0]["raw"]
    assert message == f"{data / BOMB_NAME}: image is 400,000,000 pixels, more than the max-pixels limit of " \
                      f"{DEFAULT_MAX_PIXELS:,}; skipped (a decompression bomb, or raise the limit with " \
                      "--max-pixels or VLMFACE_MAX_PIXELS)"
    good = [r for r in records if r["sample_id"] != BOMB_NAME]
    assert len(good) == 2 * len(faces) and all(r["status"] == "ok" for r in good)
    # finished work survives: a rerun makes no new predictions and keeps every answer
    again = _eval(data, tmp_path / "out")
    assert read_records(again.run_dir / "predictions.jsonl") == records


def test_max_pixels_is_configurable(tmp_path, faces, monkeypatch):
    data = faces[0].read_bytes()
    side = Image.open(io.BytesIO(data)).width
    assert decode_image(data, "face", max_pixels=side * side).size == (side, side)
    with pytest.raises(SampleError, match=rf"face: image is {side}x{side} = .* max-pixels limit of 100;"):
        decode_image(data, "face", max_pixels=100)
    monkeypatch.setenv("VLMFACE_MAX_PIXELS", "100")
    assert default_max_pixels() == 100
    loaded = next(iter_batches([_sample(faces[0])], batch_size=1))[0]
    assert loaded.image is None and "max-pixels limit of 100" in loaded.error
    loaded = next(iter_batches([_sample(faces[0])], batch_size=1, max_pixels=10**6))[0]
    assert loaded.error is None and loaded.image.size == (side, side)
    monkeypatch.setenv("VLMFACE_MAX_PIXELS", "lots")
    with pytest.raises(SampleError, match="VLMFACE_MAX_PIXELS='lots': give a positive whole number"):
        default_max_pixels()


def _sample(path: Path):
    from vlmface.data.samples import FileImage, Sample

    return Sample(id=path.name, image=FileImage(path), labels={})


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_image_is_decoded_reduced(faces, fmt):
    side = 2 * DECODE_MAX_SIDE + 8
    face = Image.open(faces[0]).convert("RGB")
    buffer = io.BytesIO()
    face.resize((side, side // 2), Image.Resampling.NEAREST).save(buffer, format=fmt, compress_level=1)
    image = decode_image(buffer.getvalue(), "large")
    assert image.mode == "RGB" and max(image.size) <= DECODE_MAX_SIDE
    assert image.size[0] >= DECODE_MAX_SIDE // 2 and image.size[0] == 2 * image.size[1] + (image.size[0] % 2)
    small = np.asarray(face.resize(image.size), dtype=float)
    assert np.abs(np.asarray(image, dtype=float) - small).mean() < 12  # the same face, only smaller


def _wide_copies(face: Path, folder: Path) -> dict[str, Path]:
    """8-bit grey face and its 16-bit, 32-bit int and float copies, under UTKFace names."""
    grey = np.asarray(Image.open(face).convert("L"), dtype=np.uint16)
    stem = face.name.split(".")[0].rsplit("_", 1)[0]
    copies = {
        "L": (Image.fromarray(grey.astype(np.uint8)), "PNG"),
        "I;16": (Image.fromarray(grey * 257), "PNG"),  # full 16-bit range, as a 16-bit PNG stores it
        "I": (Image.fromarray(grey.astype(np.int32) * 257, mode="I"), "TIFF"),
        "F": (Image.fromarray(grey.astype(np.float32) / 255.0, mode="F"), "TIFF"),
    }
    paths = {}
    for i, (mode, (image, fmt)) in enumerate(copies.items()):
        paths[mode] = folder / f"{stem}_2017010100000000{i}.jpg.chip.jpg"
        image.save(paths[mode], format=fmt)
        assert Image.open(paths[mode]).mode == mode
    return paths


def test_wide_modes_scale_to_the_8bit_face(tmp_path, faces):
    paths = _wide_copies(faces[1], tmp_path)
    reference = np.asarray(decode_image(paths["L"].read_bytes(), "8-bit"), dtype=int)
    for mode in ("I;16", "I", "F"):
        decoded = np.asarray(decode_image(paths[mode].read_bytes(), mode), dtype=int)
        assert np.abs(decoded - reference).max() <= 1, mode  # not all white, not black


def test_wide_copies_get_the_prediction_of_the_8bit_face(tmp_path, faces):
    data = tmp_path / "faces"
    data.mkdir()
    paths = {mode: path.name for mode, path in _wide_copies(faces[1], data).items()}
    records = read_records(_eval(data, tmp_path / "out").run_dir / "predictions.jsonl")
    by_file = {(r["sample_id"], r["attribute"]): (r["status"], r["label"]) for r in records}
    for attribute in ("gender", "age"):
        eight_bit = by_file[(paths["L"], attribute)]
        assert eight_bit[0] == "ok"
        for mode in ("I;16", "I", "F"):
            assert by_file[(paths[mode], attribute)] == eight_bit, (mode, attribute)


def test_max_pixels_reaches_the_run_from_the_cli(tmp_path, faces, fake_backend, capsys):
    from vlmface.cli import main

    data = tmp_path / "faces"
    data.mkdir()
    for face in faces[:2]:
        shutil.copy(face, data / face.name)
    args = ["eval", "--task", "utkface", "--model", "fake:none", "--data-dir", str(data), "--out",
            str(tmp_path / "out"), "--attributes", "gender", "--no-score", "--no-progress"]
    assert main([*args, "--max-pixels", "100"]) == 0
    records = read_records(next((tmp_path / "out").rglob("predictions.jsonl")))
    assert len(records) == 2 and all(r["status"] == "error" and "max-pixels limit of 100;" in r["raw"]
                                     for r in records)
    with pytest.raises(SystemExit):
        main([*args, "--max-pixels", "0"])
    assert "--max-pixels expects a positive whole number, got '0'" in capsys.readouterr().err
