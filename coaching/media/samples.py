"""Small real media files made with PyAV, for the demo data and the tests.

Nothing here is used to handle patients' uploads; it only makes files to feed the real check.
"""

from __future__ import annotations

from pathlib import Path

import av
from av.audio.frame import AudioFrame
from PIL import Image, ImageDraw

# (container format, encoder) per content type; every one is in PyAV's wheels.
ENCODERS = {
    "video/mp4": ("mp4", "libx264"),
    "video/quicktime": ("mov", "libx264"),
    "video/webm": ("webm", "libvpx"),
}


def write_video(
    path: Path,
    *,
    content_type: str = "video/mp4",
    codec: str | None = None,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (96, 64),
    faststart: bool = False,
    with_audio: bool = False,
    live: bool = False,
) -> Path:
    """Write a short test-card video (a bar moving over a changing colour) and return its path.

    `faststart` puts an MP4's index first; `live` writes WebM as browsers record it, without a
    duration in the header.
    """
    fmt, default_codec = ENCODERS[content_type]
    options = {"movflags": "faststart"} if faststart else {}
    if live:
        options["live"] = "1"
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec or default_codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        audio = None
        if with_audio:
            audio = container.add_stream("aac" if fmt != "webm" else "libopus", rate=48000)
            audio.layout = "mono"
        frames = int(seconds * fps)
        for index in range(frames):
            image = Image.new("RGB", size, ((index * 12) % 256, 90, 160))
            x = (index * 4) % size[0]
            ImageDraw.Draw(image).rectangle([x, 0, x + size[0] // 8, size[1]], fill="white")
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _encode_silence(container, audio, seconds)
    return path


def _encode_silence(container, stream, seconds: float) -> None:
    rate = stream.rate
    samples = stream.codec_context.frame_size or 1024
    pts = 0
    while pts < seconds * rate:
        frame = AudioFrame(format="fltp", layout="mono", samples=samples)
        frame.planes[0].update(bytes(4 * samples))
        frame.sample_rate = rate
        frame.pts = pts
        pts += samples
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio_only(path: Path, *, seconds: float = 1.0) -> Path:
    """Write an MP4 file holding only sound (AAC), no picture."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        _encode_silence(container, stream, seconds)
    return path
