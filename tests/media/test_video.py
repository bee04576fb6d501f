"""The PyAV video check on real files made with PyAV: good videos pass with their duration and a
thumbnail; junk, cut-off, sound-only, too long and mislabelled files are refused with a reason."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PIL import Image

from coaching.media.samples import write_video
from coaching.media.video import VideoRejected, inspect_video


@pytest.mark.parametrize(
    ("name", "codec", "container"),
    [
        ("mp4", "h264", "mp4"),
        ("mp4_audio", "h264", "mp4"),
        ("mov", "h264", "mov"),
        ("webm_vp8", "vp8", "webm"),
        ("webm_vp9", "vp9", "webm"),
        ("webm_live", "vp8", "webm"),
    ],
)
def test_real_videos_pass_with_duration_and_thumbnail(
    sample_videos, tmp_path, name, codec, container
):
    path, content_type = sample_videos[name]
    thumbnail = tmp_path / "thumb.jpg"
    info = inspect_video(
        path, content_type=content_type, max_duration_s=300, thumbnail_path=thumbnail
    )
    assert info.duration_s == pytest.approx(2.0, abs=0.15)
    assert info.codec == codec
    assert container in info.container
    assert (info.width, info.height) == (96, 64)
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG"
        assert image.size == (96, 64)


def test_a_browser_recording_without_a_duration_is_measured_from_its_packets(
    sample_videos, tmp_path
):
    import av

    path, content_type = sample_videos["webm_live"]
    with av.open(str(path)) as container:
        assert container.duration is None  # as MediaRecorder writes it
    info = inspect_video(
        path, content_type=content_type, max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
    )
    assert info.duration_s == pytest.approx(2.0, abs=0.15)


def test_the_thumbnail_is_taken_about_one_second_in(sample_videos, tmp_path):
    # The sample's colour changes every frame (red = 12 × frame index): frame 10 is at 1.0 s.
    path, content_type = sample_videos["mp4"]
    thumbnail = tmp_path / "thumb.jpg"
    inspect_video(path, content_type=content_type, max_duration_s=300, thumbnail_path=thumbnail)
    with Image.open(thumbnail) as image:
        red = image.convert("RGB").getpixel((image.width - 1, image.height // 2))[0]
    assert abs(red - 120) <= 20


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("junk", "not_a_video"),
        ("audio_only", "no_video_stream"),
        ("truncated_mp4", "truncated"),
        ("truncated_mp4_no_index", "truncated"),
        ("truncated_webm", "truncated"),
    ],
)
def test_broken_files_are_refused_with_a_reason(sample_videos, tmp_path, name, code):
    path, content_type = sample_videos[name]
    with pytest.raises(VideoRejected) as caught:
        inspect_video(
            path, content_type=content_type, max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
        )
    assert caught.value.code == code
    assert not (tmp_path / "t.jpg").exists()


def test_a_video_over_the_maximum_duration_is_refused(sample_videos, tmp_path):
    path, content_type = sample_videos["long_mp4"]
    with pytest.raises(VideoRejected) as caught:
        inspect_video(
            path, content_type=content_type, max_duration_s=5, thumbnail_path=tmp_path / "t.jpg"
        )
    assert caught.value.code == "too_long"
    info = inspect_video(
        path, content_type=content_type, max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
    )
    assert info.duration_s == pytest.approx(8.0, abs=0.3)


def _understate_length(source: Path, target: Path, factor: int) -> Path:
    """Write a copy whose MP4 headers (movie, media and track) claim a fraction of the length."""
    data = bytearray(source.read_bytes())
    # Offsets of the 32-bit duration after each box's type (version 0 boxes, as PyAV writes).
    for box, offset in ((b"mvhd", 16), (b"mdhd", 16), (b"tkhd", 20)):
        at = data.find(box) + 4 + offset
        (old,) = struct.unpack(">I", data[at : at + 4])
        data[at : at + 4] = struct.pack(">I", max(1, old // factor))
    target.write_bytes(bytes(data))
    return target


def test_a_header_that_understates_the_length_does_not_beat_the_limit(tmp_path):
    lying = _understate_length(
        write_video(tmp_path / "long.mp4", seconds=8, fps=5), tmp_path / "lying.mp4", 8
    )
    with pytest.raises(VideoRejected) as caught:
        inspect_video(
            lying, content_type="video/mp4", max_duration_s=5, thumbnail_path=tmp_path / "t.jpg"
        )
    assert caught.value.code == "too_long"
    # Under a higher limit the packets' length is the one recorded, not the header's.
    info = inspect_video(
        lying, content_type="video/mp4", max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
    )
    assert info.duration_s == pytest.approx(8.0, abs=0.3)


def test_a_file_that_is_not_the_declared_type_is_refused(sample_videos, tmp_path):
    path, _ = sample_videos["mp4"]
    with pytest.raises(VideoRejected) as caught:
        inspect_video(
            path, content_type="video/webm", max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
        )
    assert caught.value.code == "wrong_type"


def test_an_empty_file_is_not_a_video(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoRejected) as caught:
        inspect_video(
            empty, content_type="video/mp4", max_duration_s=300, thumbnail_path=tmp_path / "t.jpg"
        )
    assert caught.value.code == "not_a_video"
