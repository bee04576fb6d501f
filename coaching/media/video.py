"""The video check: is an uploaded file really a video we can play, how long is it, and a
thumbnail. FFmpeg's libraries do the work, through PyAV (its wheels bundle them).

It runs in the scheduler process (`coaching/messaging/jobs.py`), never in a request: reading a
whole file of up to a gigabyte takes a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

# Container formats (as FFmpeg names its demuxers) that each declared content type may hold.
FORMATS = {
    "video/mp4": ("mp4", "mov"),
    "video/quicktime": ("mov", "mp4"),
    "video/webm": ("webm", "matroska"),
}
THUMBNAIL_AT_S = 1.0
THUMBNAIL_MAX_PX = 480
# A file whose packets stop this much before its declared duration was cut short.
TRUNCATION_SLACK = 0.9


class VideoRejected(Exception):
    """The file is not a video we accept; `code` says why (see FAILURE_REASONS in messaging)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    width: int
    height: int
    codec: str
    container: str


def _looks_like_mp4(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(12)[4:8] == b"ftyp"


def _open(path: Path):
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        # An MP4 whose index (moov) never arrived starts right but cannot be opened.
        code = "truncated" if _looks_like_mp4(path) else "not_a_video"
        raise VideoRejected(code, str(exc)) from exc


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _packets_end(container, stream) -> float:
    """Returns the time the last video packet ends, reading (not decoding) every packet."""
    start = stream.start_time or 0
    end = 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            stop = (packet.pts - start + (packet.duration or 0)) * packet.time_base
            end = max(end, float(stop))
    except av.FFmpegError as exc:
        raise VideoRejected("truncated", str(exc)) from exc
    return end


def _thumbnail_frame(path: Path, at_s: float):
    """Returns the first decoded frame at or after `at_s` (or the last one before the end)."""
    chosen = None
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                chosen = frame
                if frame.time is not None and frame.time >= at_s:
                    break
        except av.FFmpegError as exc:
            if chosen is None:
                raise VideoRejected("truncated", str(exc)) from exc
    if chosen is None:
        raise VideoRejected("truncated", "no picture could be decoded")
    return chosen


def inspect_video(
    path: Path, *, content_type: str, max_duration_s: float, thumbnail_path: Path
) -> VideoInfo:
    """Returns what the check found, having written a JPEG thumbnail about one second in;
    raises VideoRejected when the file is not an acceptable video."""
    with _open(path) as container:
        format_names = set(container.format.name.split(","))
        if not format_names & set(FORMATS.get(content_type, ())):
            raise VideoRejected("wrong_type", container.format.name)
        if not container.streams.video:
            raise VideoRejected("no_video_stream")
        stream = container.streams.video[0]
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_duration_s:
            raise VideoRejected("too_long", f"{declared:.1f} s")
        end = _packets_end(container, stream)
        if end <= 0:
            raise VideoRejected("truncated", "no video packets")
        if declared is not None and end < declared * TRUNCATION_SLACK - 0.5:
            raise VideoRejected("truncated", f"packets end at {end:.1f} of {declared:.1f} s")
        # Recordings from browsers often carry no duration at all, and a header can be edited
        # to understate the length: the packets tell, and the longer of the two counts.
        duration = max(declared or 0.0, end)
        if duration > max_duration_s:
            raise VideoRejected("too_long", f"{duration:.1f} s")
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        container_name = container.format.name
    frame = _thumbnail_frame(path, min(THUMBNAIL_AT_S, duration / 2))
    image = frame.to_image()
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation:
        # Phones record upright video as rotated frames plus a display matrix.
        image = image.rotate(rotation, expand=True)
    image.thumbnail((THUMBNAIL_MAX_PX, THUMBNAIL_MAX_PX))
    image.convert("RGB").save(thumbnail_path, "JPEG", quality=80)
    return VideoInfo(
        duration_s=round(duration, 2),
        width=width,
        height=height,
        codec=codec,
        container=container_name,
    )
