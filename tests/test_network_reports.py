"""Track reports over the network, for real: a UDP socket receiver and a mosquitto broker started by the fixture.

Receivers that disappear must never block the pipeline: reports are dropped, counted, and resume afterwards.
"""
import json
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from pipeline.app import run
from pipeline.config import load_config
from pipeline.evaluation import read_mot_file
from pipeline.sinks.base import FrameResult
from pipeline.sinks.network import UdpTrackReporter
from pipeline.types import Detections, Frame, Tracks, TrackStatus

MOSQUITTO = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")


def make_tracks(n: int, frame: int) -> Tracks:
    """n tracks with distinct, checkable values; the last one tentative (never reported)."""
    ids = np.arange(1, n + 1, dtype=np.int64)
    states = np.column_stack([10.0 * ids + frame, 5.0 * ids, 0.5 * ids, -0.25 * ids])
    boxes = np.column_stack([states[:, 0] - 2, states[:, 1] - 2, states[:, 0] + 2, states[:, 1] + 2]).astype(np.float32)
    status = np.full(n, TrackStatus.CONFIRMED, np.uint8)
    status[0] = TrackStatus.LOST
    status[-1] = TrackStatus.TENTATIVE
    covariances = np.tile(np.diag([1.0, 2.0, 0.1, 0.2]), (n, 1, 1)) * ids[:, None, None]
    return Tracks(ids, states, boxes, np.linspace(0.5, 0.9, n).astype(np.float32), np.full(n, frame + 1, np.int32),
                  np.full(n, frame, np.int32), np.zeros(n, np.int32), status, covariances)


def result(frame: int, n_tracks: int = 4, stream: str = "cam0") -> FrameResult:
    return FrameResult(Frame(stream, frame, time.monotonic_ns(), np.zeros((8, 8), np.uint8)), Detections.empty(),
                       make_tracks(n_tracks, frame))


def check_report(report: dict, res: FrameResult) -> None:
    """A report against the Tracks it came from (the arrays are the reference)."""
    tracks = res.tracks.reported()
    assert report["schema"] == "irst-track/tracks" and report["version"] == 1
    assert report["stream"] == res.frame.stream_id and report["frame"] == res.frame.index + 1
    assert report["capture_time_ns"] <= report["report_time_ns"] <= time.time_ns()
    assert abs(report["report_time_ns"] - time.time_ns()) < 5e9
    assert [t["id"] for t in report["tracks"]] == tracks.ids.tolist()
    for t, state, box, status, cov in zip(report["tracks"], tracks.states, tracks.boxes, tracks.status,
                                          tracks.covariances):
        assert np.allclose([t["x"], t["y"], t["vx"], t["vy"]], state, atol=1e-3)
        assert np.allclose(t["box"], box, atol=0.01) and np.allclose(t["covariance"], cov, atol=1e-4)
        assert t["status"] == ("lost" if status == TrackStatus.LOST else "confirmed")


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def receive(sock, count: int) -> list[dict]:
    return [json.loads(sock.recv(65536)) for _ in range(count)]


def receive_reports(sock, last_seq: int) -> list[dict]:
    """Datagrams until every part of report ``last_seq`` is in, reassembled into one report per seq."""
    parts: dict[int, list[dict]] = {}
    while len(parts.get(last_seq, [])) < parts.get(last_seq, [{"parts": 1}])[0]["parts"]:
        datagram = json.loads(sock.recv(65536))
        parts.setdefault(datagram["seq"], []).append(datagram)
    return [{**group[0], "tracks": [t for p in sorted(group, key=lambda p: p["part"]) for t in p["tracks"]]}
            for _, group in sorted(parts.items())]


def test_udp_reports_follow_the_schema_and_number_every_frame(udp_receiver):
    reporter = UdpTrackReporter(f"127.0.0.1:{udp_receiver.getsockname()[1]}")
    results = [result(i) for i in range(20)]
    for res in results:
        reporter.write(res)
    reporter.close()
    reports = receive(udp_receiver, 20)
    assert [r["seq"] for r in reports] == list(range(20)) and all(r["parts"] == 1 for r in reports)
    for report, res in zip(reports, results):
        check_report(report, res)
        assert len(report["tracks"]) == 3  # the tentative track is not reported
    assert reporter.sent == 20 and reporter.dropped == 0


def test_udp_report_with_many_tracks_is_split_into_whole_track_parts(udp_receiver):
    reporter = UdpTrackReporter(f"127.0.0.1:{udp_receiver.getsockname()[1]}", max_datagram_bytes=1024)
    res = result(3, n_tracks=40)
    reporter.write(res)
    reporter.close()
    first = json.loads(udp_receiver.recv(65536))
    parts = [first] + receive(udp_receiver, first["parts"] - 1)
    assert first["parts"] > 5 and [p["part"] for p in parts] == list(range(first["parts"]))
    assert all(p["seq"] == 0 for p in parts)
    sizes = []
    for p in parts:
        sizes.append(len(json.dumps(p, separators=(",", ":"))))
    assert max(sizes) <= 1024
    check_report({**first, "tracks": [t for p in parts for t in p["tracks"]]}, res)


def test_udp_receiver_that_disappears_never_blocks_and_reports_resume(udp_receiver):
    port = udp_receiver.getsockname()[1]
    reporter = UdpTrackReporter(f"127.0.0.1:{port}")
    for i in range(5):
        reporter.write(result(i))
    assert [r["seq"] for r in receive(udp_receiver, 5)] == list(range(5))
    udp_receiver.close()  # the receiver goes away: the kernel answers with ICMP port unreachable
    slowest = 0.0
    for i in range(5, 105):
        started = time.perf_counter()
        reporter.write(result(i))
        slowest = max(slowest, time.perf_counter() - started)
    assert reporter.dropped > 0 and slowest < 0.05
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", port))
    back.settimeout(2.0)
    try:
        for i in range(105, 110):
            reporter.write(result(i))
        seqs = [r["seq"] for r in receive(back, 5)]
    finally:
        back.close()
        reporter.close()
    assert seqs[-1] == 109 and seqs == sorted(seqs)  # the gap from 5 to 104 shows the receiver what it missed


def test_pipeline_sends_one_udp_report_per_frame_matching_tracks_txt(udp_receiver, tmp_path):
    port = udp_receiver.getsockname()[1]
    reports = []
    collector = threading.Thread(target=lambda: reports.extend(receive_reports(udp_receiver, 29)))
    collector.start()
    config = load_config(None, [f"outputs.dir={tmp_path}", "runner.progress=false", "outputs.video=false",
                                f"outputs.udp.address=127.0.0.1:{port}", "source.synthetic.frames=30",
                                "source.synthetic.width=256", "source.synthetic.height=192"])
    summary, stats, _ = run(config)
    collector.join()
    assert not stats.errors and summary["frames"] == 30
    counters = summary["streams"]["synthetic"]["outputs"]["UdpTrackReporter"]
    assert counters["dropped"] == 0 and counters["sent"] >= 30  # datagrams: a report with many tracks has parts
    assert [r["seq"] for r in reports] == list(range(30)) and [r["frame"] for r in reports] == list(range(1, 31))
    rows = read_mot_file(tmp_path / "tracks.txt")
    for report in reports:
        in_file = rows[rows[:, 0] == report["frame"]]
        assert sorted(t["id"] for t in report["tracks"]) == sorted(in_file[:, 1].astype(int).tolist())
    assert sum(len(r["tracks"]) for r in reports) == len(rows) > 0


# ---------------------------------------------------------------- MQTT, against a real mosquitto broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A mosquitto process on a loopback port; stop() and start() again on the same port."""

    def __init__(self, folder, port):
        self.port, self.config = port, folder / "mosquitto.conf"
        self.config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = None

    def start(self):
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto broker (apt-get install mosquitto)")
    pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt (pip install 'irst-track[mqtt]')")
    b = Broker(tmp_path, free_port())
    b.start()
    yield b
    if b.process.poll() is None:
        b.stop()


class Subscriber:
    def __init__(self, port, topic="irst/#"):
        import paho.mqtt.client as mqtt

        self.messages, self.ready = [], threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("qos", [0, 1])
def test_mqtt_reports_arrive_in_order_on_the_stream_topic(broker, qos):
    from pipeline.sinks.network import MqttTrackReporter

    subscriber = Subscriber(broker.port)
    reporter = MqttTrackReporter(f"127.0.0.1:{broker.port}", "cam7", qos=qos)
    results = [result(i, stream="cam7") for i in range(40)]
    for res in results:
        reporter.write(res)
    reporter.close()
    messages = subscriber.wait_for(40)
    subscriber.close()
    assert len(messages) == 40 and {topic for topic, _ in messages} == {"irst/cam7/tracks"}
    assert [m["seq"] for _, m in messages] == list(range(40))
    for (_, report), res in zip(messages, results):
        check_report(report, res)
    assert reporter.sent == 40 and reporter.dropped == 0


def test_mqtt_broker_that_disappears_never_blocks_and_reports_resume(broker):
    from pipeline.sinks.network import MqttTrackReporter

    reporter = MqttTrackReporter(f"127.0.0.1:{broker.port}", "cam0")
    for i in range(5):
        reporter.write(result(i))
    broker.stop()
    slowest, i = 0.0, 5
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # keep tracking at ~100 fps while the broker is down
        started = time.perf_counter()
        reporter.write(result(i))
        slowest = max(slowest, time.perf_counter() - started)
        i += 1
        time.sleep(0.01)
    assert reporter.dropped > 0 and slowest < 0.05, (reporter.dropped, slowest)
    broker.start()
    subscriber = Subscriber(broker.port)
    deadline = time.monotonic() + 15  # paho retries after 1 s, then 2 s, ...
    while not subscriber.messages and time.monotonic() < deadline:
        reporter.write(result(i))
        i += 1
        time.sleep(0.02)
    reporter.close()
    subscriber.close()
    assert subscriber.messages, "reports did not resume after the broker came back"
    assert subscriber.messages[0][1]["seq"] > 5 and reporter.sent + reporter.dropped == i


def test_pipeline_publishes_one_mqtt_report_per_frame(broker, tmp_path):
    subscriber = Subscriber(broker.port)
    config = load_config(None, [f"outputs.dir={tmp_path}", "runner.progress=false", "outputs.video=false",
                                f"outputs.mqtt.broker=127.0.0.1:{broker.port}", "outputs.mqtt.qos=1",
                                "source.synthetic.frames=25", "source.synthetic.width=192",
                                "source.synthetic.height=160"])
    summary, stats, _ = run(config)
    messages = subscriber.wait_for(25)
    subscriber.close()
    assert not stats.errors and summary["streams"]["synthetic"]["outputs"]["MqttTrackReporter"]["sent"] == 25
    assert [m["frame"] for _, m in messages] == list(range(1, 26))
    assert {topic for topic, _ in messages} == {"irst/synthetic/tracks"}


def test_udp_and_mqtt_together_send_one_report_built_once_per_frame(broker, udp_receiver, tmp_path, monkeypatch):
    import pipeline.sinks.network as network

    built = []
    records = network.track_records
    monkeypatch.setattr(network, "track_records", lambda res: built.append(res.frame.index) or records(res))
    subscriber = Subscriber(broker.port)
    udp = []
    collector = threading.Thread(target=lambda: udp.extend(receive_reports(udp_receiver, 19)))
    collector.start()
    config = load_config(None, [f"outputs.dir={tmp_path}", "runner.progress=false", "outputs.video=false",
                                f"outputs.udp.address=127.0.0.1:{udp_receiver.getsockname()[1]}",
                                f"outputs.mqtt.broker=127.0.0.1:{broker.port}", "outputs.mqtt.qos=1",
                                "source.synthetic.frames=20", "source.synthetic.width=192",
                                "source.synthetic.height=160"])
    summary, stats, _ = run(config)
    collector.join()
    mqtt = [report for _, report in subscriber.wait_for(20)]
    subscriber.close()
    assert not stats.errors and built == list(range(20))  # one report per frame, not one per output
    assert [{k: v for k, v in r.items() if k not in ("part", "parts")} for r in udp] == mqtt
    assert sum(len(r["tracks"]) for r in mqtt) > 0
