"""Prometheus metrics: the node_exporter text file and the optional HTTP endpoint."""

from __future__ import annotations

import os
import socket
import stat
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modsingest.service.metrics import Metrics, channel_label


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the text exposition format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(table, name, **labels):
    return table[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics(tmp_path):
    m = Metrics(tmp_path)
    yield m
    m.stop()


def test_textfile_holds_the_recorded_values(metrics, tmp_path):
    before = time.time()
    metrics.delivered("mods1b", latency=4.0, seconds=2.5)
    metrics.delivered("MODS1B", latency=50.0, seconds=0.4)
    metrics.delivered("mods2r", latency=-1.0, seconds=1.0)  # clock step: counted as 0
    metrics.failed("mods1r", "read")
    metrics.incomplete("mods1r")
    metrics.warned("timestamps", 2)
    metrics.found_by_rescan()
    metrics.found_by_rescan(3)
    metrics.set_inotify_blind(True)
    metrics.set_queue_depth(5)
    metrics.set_workers_busy(2)
    assert metrics.write_textfile()

    path = tmp_path / "modsingest.prom"
    t = samples(path.read_text())
    assert value(t, "modsingest_files_delivered_total", channel="mods1b") == 2
    assert value(t, "modsingest_files_delivered_total", channel="mods2r") == 1
    assert value(t, "modsingest_files_delivered_total", channel="mods2b") == 0  # present at 0
    assert value(t, "modsingest_files_failed_total", channel="mods1r", stage="read") == 1
    assert value(t, "modsingest_files_incomplete_total", channel="mods1r") == 1
    assert value(t, "modsingest_step_warnings_total", step="timestamps") == 2
    assert value(t, "modsingest_files_found_by_rescan_total") == 4
    assert value(t, "modsingest_inotify_blind") == 1
    assert value(t, "modsingest_queue_depth") == 5
    assert value(t, "modsingest_workers_busy") == 2

    lat = "modsingest_delivery_latency_seconds"
    assert value(t, f"{lat}_count", channel="mods1b") == 2
    assert value(t, f"{lat}_sum", channel="mods1b") == 54.0
    assert value(t, f"{lat}_bucket", channel="mods1b", le="5.0") == 1
    assert value(t, f"{lat}_bucket", channel="mods1b", le="60.0") == 2
    assert value(t, f"{lat}_sum", channel="mods2r") == 0.0
    assert value(t, "modsingest_processing_seconds_count") == 3
    assert value(t, "modsingest_processing_seconds_sum") == pytest.approx(3.9)

    stamp = value(t, "modsingest_last_delivery_timestamp_seconds", channel="mods1b")
    assert before <= stamp <= time.time()
    assert ("modsingest_last_delivery_timestamp_seconds", (("channel", "mods1r"),)) not in t
    # Readable by node_exporter running as another user; no temporary file left behind.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["modsingest.prom"]


def test_textfile_is_replaced_with_new_values(metrics, tmp_path):
    metrics.set_inotify_blind(True)
    metrics.write_textfile()
    metrics.set_inotify_blind(False)
    metrics.write_textfile()
    t = samples((tmp_path / "modsingest.prom").read_text())
    assert value(t, "modsingest_inotify_blind") == 0


def test_user_chosen_roots_share_one_label():
    assert channel_label("m1bTest") == "other"
    assert channel_label("MODS2B") == "mods2b"


def test_instances_do_not_share_values(tmp_path):
    a, b = Metrics(tmp_path / "a"), Metrics(tmp_path / "b")
    a.delivered("mods1b", 1.0, 1.0)
    ta, tb = samples(a.exposition().decode()), samples(b.exposition().decode())
    assert value(ta, "modsingest_files_delivered_total", channel="mods1b") == 1
    assert value(tb, "modsingest_files_delivered_total", channel="mods1b") == 0


def test_write_failure_is_reported_not_raised(tmp_path, caplog):
    m = Metrics(tmp_path / "no-such-dir")
    assert m.write_textfile() is False
    assert "cannot write" in caplog.text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_endpoint_answers_on_loopback(tmp_path):
    m = Metrics(tmp_path, port=free_port(), host="127.0.0.1")
    try:
        host, port = m.start_http()
        assert host == "127.0.0.1"
        m.delivered("mods2b", 3.0, 1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        t = samples(body)
        assert value(t, "modsingest_files_delivered_total", channel="mods2b") == 1
    finally:
        m.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_port_zero_serves_nothing(metrics):
    assert metrics.start_http() is None
    assert metrics.http_address is None


def test_waiting_and_gate_counts_are_the_ones_status_shows(metrics, tmp_path):
    metrics.set_waiting(3, 125.0)
    metrics.publish_retry("MODS1R")
    metrics.set_gate_held({"incomplete": 2, "waiting for CONPARS": 1, "something new": 4})
    assert metrics.write_textfile()
    text = (tmp_path / "modsingest.prom").read_text()
    for line in (
        "modsingest_files_waiting_for_destination 3.0",
        "modsingest_oldest_waiting_for_destination_seconds 125.0",
        'modsingest_publish_retries_total{channel="mods1r"} 1.0',
        'modsingest_gate_files{state="incomplete"} 2.0',
        'modsingest_gate_files{state="waiting_for_conpars"} 1.0',
        'modsingest_gate_files{state="impossible"} 0.0',
        'modsingest_gate_files{state="other"} 4.0',
    ):
        assert line in text.splitlines(), line
    metrics.set_waiting(0, 999.0)
    metrics.set_gate_held({})
    metrics.write_textfile()
    text = (tmp_path / "modsingest.prom").read_text().splitlines()
    assert "modsingest_oldest_waiting_for_destination_seconds 0.0" in text
    assert 'modsingest_gate_files{state="incomplete"} 0.0' in text
    assert 'modsingest_gate_files{state="other"} 0.0' in text
