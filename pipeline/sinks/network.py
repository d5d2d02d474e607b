"""Per-frame track reports for integrators: JSON datagrams over UDP, and messages through an MQTT broker.

Neither ever blocks the pipeline: when the receiver or the broker is gone, reports are dropped and counted
(``dropped``), the outage and the recovery are logged, and tracking goes on. The report (schema version 1) is
one JSON object per processed frame of each stream, sent even when no track is reported so that receivers see
the stream alive::

    {"schema": "irst-track/tracks", "version": 1,
     "stream": "cam0",                # stream id (source.id)
     "seq": 41,                       # per-stream report counter from 0; a gap at the receiver = lost reports
     "frame": 42,                     # frame number in the stream from 1 (gaps: frames a live source dropped)
     "capture_time_ns": 1764590000123456789,   # Unix time (ns) when the frame was read from the source
     "report_time_ns": 1764590000131456789,    # Unix time (ns) when this report was made
     "part": 0, "parts": 1,           # UDP only: a report over max_datagram_bytes is split across datagrams
                                      # with the same seq; each part carries whole tracks
     "tracks": [
       {"id": 7,                      # unique in its stream, never reused
        "status": "confirmed",        # "confirmed": detected this frame; "lost": coasting on prediction
        "x": 312.41, "y": 101.93,     # centre in source-image pixels (x to the right, y down)
        "vx": 0.82, "vy": -0.11,      # velocity in pixels per frame
        "covariance": [[...], ...],   # 4 x 4 covariance of (x, y, vx, vy) in px and px/frame units, or null
        "box": [309.9, 99.4, 314.9, 104.4],  # x1, y1, x2, y2 in pixels
        "score": 0.913, "age": 40, "hits": 38, "misses": 0}]}

Tentative tracks are not reported. Times come from the host's clock: the difference of the two times is the
pipeline's latency for that frame.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import numpy as np

from pipeline.errors import UserError
from pipeline.sinks.base import FrameResult
from pipeline.types import TrackStatus

SCHEMA = "irst-track/tracks"
SCHEMA_VERSION = 1
log = logging.getLogger("irst.sinks")


def parse_address(address: str) -> tuple[str, int] | None:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); None when malformed (the config checks it this way)."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def bad_address(address: str) -> str:
    """What is wrong with a malformed address, for the config check and for split_address alike."""
    return f"expected HOST:PORT (e.g. 127.0.0.1:5005), got {address!r}"


def split_address(address: str, what: str) -> tuple[str, int]:
    """(host, port) of 'HOST:PORT', with a UserError naming ``what`` when malformed."""
    parsed = parse_address(address)
    if parsed is None:
        raise UserError(f"{what}: {bad_address(address)}")
    return parsed


def track_records(result: FrameResult) -> list[dict]:
    """The reported tracks of one frame as plain JSON-ready dicts (schema above)."""
    tracks = result.tracks.reported()
    covariances = tracks.covariances.round(5).tolist() if tracks.covariances is not None else [None] * len(tracks)
    states = tracks.states.round(3).tolist()
    boxes = tracks.boxes.astype(np.float64).round(2).tolist()
    return [{"id": int(i), "status": "lost" if s == TrackStatus.LOST else "confirmed",
             "x": st[0], "y": st[1], "vx": st[2], "vy": st[3], "covariance": cov, "box": box,
             "score": round(sc, 4), "age": a, "hits": h, "misses": m}
            for i, s, st, cov, box, sc, a, h, m in zip(
                tracks.ids.tolist(), tracks.status.tolist(), states, covariances, boxes, tracks.scores.tolist(),
                tracks.ages.tolist(), tracks.hits.tolist(), tracks.misses.tolist())]


class TrackReportEncoder:
    """Builds the per-frame reports of one stream and numbers them (``seq``).

    Each frame's report is built once, by whichever output asks first: the UDP and MQTT outputs of a stream share
    one encoder, so both carry the same report (same ``seq`` and times).
    """

    def __init__(self):
        self.seq = 0
        self._built: tuple[FrameResult, str, list[str]] | None = None

    def _build(self, result: FrameResult) -> tuple[str, list[str]]:
        """The frame's header as JSON without its closing brace, and each track as JSON."""
        if self._built is None or self._built[0] is not result:
            now_unix, now_mono = time.time_ns(), time.monotonic_ns()
            header = {"schema": SCHEMA, "version": SCHEMA_VERSION, "stream": result.frame.stream_id, "seq": self.seq,
                      "frame": result.frame.index + 1,
                      "capture_time_ns": result.frame.timestamp_ns + (now_unix - now_mono),
                      "report_time_ns": now_unix}
            self.seq += 1
            tracks = [json.dumps(t, separators=(",", ":")) for t in track_records(result)]
            self._built = (result, json.dumps(header, separators=(",", ":"))[:-1], tracks)
        return self._built[1], self._built[2]

    def encode(self, result: FrameResult) -> bytes:
        """One report as compact JSON (MQTT: brokers carry messages of any practical size)."""
        head, tracks = self._build(result)
        return f'{head},"tracks":[{",".join(tracks)}]}}'.encode()

    def encode_parts(self, result: FrameResult, max_bytes: int) -> list[bytes]:
        """One report as one or more datagrams of at most ``max_bytes``, each with whole tracks (UDP)."""
        head, tracks = self._build(result)
        budget = max_bytes - len(head) - len(',"part":99999,"parts":99999,"tracks":[]}')
        chunks: list[list[str]] = [[]]
        used = 0
        for text in tracks:
            if len(text) + 1 > budget:
                raise UserError(f"one track report needs {len(text)} bytes; raise outputs.udp.max_datagram_bytes "
                                f"above {max_bytes}")
            if used + len(text) + 1 > budget:
                chunks.append([])
                used = 0
            chunks[-1].append(text)
            used += len(text) + 1
        return [f'{head},"part":{i},"parts":{len(chunks)},"tracks":[{",".join(chunk)}]}}'.encode()
                for i, chunk in enumerate(chunks)]


class _Outage:
    """Logs once when deliveries start failing and once when they work again, with what was dropped between.

    ``confirm_after`` successes in a row count as recovery: to a closed UDP port every other send succeeds (the
    kernel reports the ICMP error on the next one), which is not a receiver being back.
    """

    def __init__(self, what: str, confirm_after: int = 1):
        self.what, self.confirm_after = what, confirm_after
        self.down, self.dropped_at_start, self.streak = False, 0, 0

    def failed(self, dropped_before: int, why: str) -> None:
        """A report could not be delivered; ``dropped_before`` is the drop count without it."""
        self.streak = 0
        if not self.down:
            self.down, self.dropped_at_start = True, dropped_before
            log.warning("%s unreachable (%s); track reports are dropped and counted until it is back", self.what, why)

    def delivered(self, dropped: int) -> None:
        self.streak += 1
        if self.down and self.streak >= self.confirm_after:
            self.down = False
            log.warning("%s reachable again; %d track reports were dropped", self.what, dropped - self.dropped_at_start)


class UdpTrackReporter:
    """Sends each frame's track report as JSON datagrams to HOST:PORT from a non-blocking socket.

    UDP has no delivery guarantee: ``sent`` counts datagrams handed to the OS, ``dropped`` those it refused
    (receiver port closed, send buffer full); the receiver finds other losses from gaps in ``seq``.
    """

    def __init__(self, address: str, max_datagram_bytes: int = 8192, encoder: TrackReportEncoder | None = None):
        host, port = split_address(address, "outputs.udp.address")
        try:
            family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as err:
            raise UserError(f"outputs.udp.address: cannot resolve {host!r} ({err.strerror})") from None
        self.address, self.max_datagram_bytes = address, max_datagram_bytes
        self._socket = socket.socket(family, kind, proto)
        self._socket.setblocking(False)
        # Connected, so that the kernel reports a closed receiver port (ICMP) as an error on a later send.
        self._socket.connect(target)
        self.encoder = encoder or TrackReportEncoder()
        self.sent = self.dropped = 0
        self._outage = _Outage(f"UDP receiver {address}", confirm_after=3)

    def write(self, result: FrameResult) -> None:
        for datagram in self.encoder.encode_parts(result, self.max_datagram_bytes):
            try:
                self._socket.send(datagram)
            except OSError as err:
                self._outage.failed(self.dropped, err.strerror or type(err).__name__)
                self.dropped += 1
                continue
            self.sent += 1
            self._outage.delivered(self.dropped)

    def close(self) -> None:
        self._socket.close()


class MqttTrackReporter:
    """Publishes each frame's track report to ``topic`` through an MQTT broker (paho-mqtt, network thread of its own).

    The client connects in the background and reconnects by itself (1 s doubling to 30 s). While the broker is
    unreachable, or has not taken the last ``max_queued`` reports yet, new reports are dropped and counted, so a
    stalled broker can neither block the pipeline nor fill its memory. ``close`` waits up to ``flush_timeout_s``
    for the reports already handed over.
    """

    def __init__(self, broker: str, stream_id: str, topic: str = "irst/{stream}/tracks", qos: int = 0,
                 max_queued: int = 100, keepalive_s: int = 10, connect_timeout_s: float = 3.0,
                 flush_timeout_s: float = 5.0, encoder: TrackReportEncoder | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise UserError("MQTT track reports need paho-mqtt: pip install 'irst-track[mqtt]'") from None
        self._mqtt = mqtt
        host, port = split_address(broker, "outputs.mqtt.broker")
        self.broker, self.topic, self.qos = broker, topic.format(stream=stream_id), qos
        self.max_queued, self.flush_timeout_s = max_queued, flush_timeout_s
        self.encoder = encoder or TrackReportEncoder()
        self.sent = self.dropped = 0
        self._pending = 0  # handed to paho, not yet written to the broker (qos 0) or acknowledged (qos 1)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._outage = _Outage(f"MQTT broker {broker}")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"irst-{stream_id}-{os.getpid()}")
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect_async(host, port, keepalive=keepalive_s)
        except (OSError, ValueError) as err:
            raise UserError(f"outputs.mqtt.broker {broker!r}: {err}") from None
        self.client.loop_start()
        if not self._connected.wait(connect_timeout_s):  # the first reports should not be lost to a slow handshake
            self._outage.failed(0, f"no connection after {connect_timeout_s:g} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            return
        with self._lock:
            if self.qos == 0:  # paho drops unsent qos-0 packets when it reconnects
                self._pending = 0
        self._connected.set()
        self._outage.delivered(self.dropped)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._pending = max(self._pending - 1, 0)

    def write(self, result: FrameResult) -> None:
        payload = self.encoder.encode(result)
        why = None
        with self._lock:
            if not self._connected.is_set():
                why = "not connected"
            elif self._pending >= self.max_queued:
                why = f"{self._pending} reports not yet taken"
            else:
                self._pending += 1
        if why is None:
            info = self.client.publish(self.topic, payload, qos=self.qos)
            if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
                self.sent += 1
                return
            why = self._mqtt.error_string(info.rc)
            with self._lock:
                self._pending = max(self._pending - 1, 0)
        self._outage.failed(self.dropped, why)
        self.dropped += 1

    def close(self) -> None:
        deadline = time.monotonic() + self.flush_timeout_s
        while self._connected.is_set() and self._pending > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
