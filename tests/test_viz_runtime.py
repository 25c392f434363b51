"""The runtime pictures: the state machine's content, and the dashboard driven for real."""

from __future__ import annotations

import subprocess
import time

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import pytest
from matplotlib.figure import Figure

from containerlab.runtime import lifecycle, state
from containerlab.viz import runtime as vr
from tests.conftest import CLI


def clab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


# --- the state machine ----------------------------------------------------------------------
def test_every_state_is_a_box_with_its_name():
    fig = vr.state_machine()
    assert isinstance(fig, Figure)
    boxes = {p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("state:")}
    assert boxes == {f"state:{s}" for s in ("created", "running", "paused", "exited", "removed")}
    names = {t.get_text() for t in fig.axes[0].texts if not t.get_gid()}
    assert names == {"created", "running", "paused", "exited", "removed"}
    assert vr.highlighted(fig) == []


def test_edges_are_labelled_with_the_verbs():
    labels = vr.edge_labels(vr.state_machine())
    assert labels[("created", "running")] == "start"
    assert labels[("running", "exited")] == "stop / kill / exit"
    assert labels[("exited", "running")] == "start"
    assert labels[("running", "paused")] == "pause"
    assert labels[("paused", "running")] == "unpause"
    assert labels[("running", "running")] == "restart"
    assert labels[("exited", "removed")] == labels[("created", "removed")] == "rm"
    assert labels[("running", "removed")] == "rm -f"
    arrows = {p.get_gid() for p in vr.state_machine().axes[0].patches}
    assert {f"arrow:{a}->{b}" for a, b in labels} <= arrows


def test_highlight_marks_one_state_and_names_it_in_the_title():
    fig = vr.state_machine("running")
    assert vr.highlighted(fig) == ["running"]
    assert "running" in fig.axes[0].get_title()
    assert vr.highlighted(vr.state_machine("removing")) == ["removed"]  # on its way out
    with pytest.raises(ValueError, match="unknown state 'stopped'"):
        vr.state_machine("stopped")


# --- the dashboard, on real containers --------------------------------------------------------
def _wait_until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_dashboard_rows_buttons_and_logs():
    names = ("dash-one", "dash-two")
    dash = None
    try:
        for name in names:
            script = f"echo hello from {name}; echo line two; exec sleep 60"
            res = clab("run", "-d", "--init", "--name", name, "busybox", "sh", "-c", script)
            assert res.returncode == 0, res.stderr
        _wait_until(lambda: all(len(list(lifecycle.log_entries(n))) == 2 for n in names))

        dash = vr.Dashboard(refresh_every=0.2, stop_timeout=5)
        assert dash.refreshing
        rows = dash.values_in_order()
        assert [r["name"] for r in rows] == ["dash-two", "dash-one"]  # newest first, as ps
        for r in rows:
            rec = lifecycle.get(r["name"])
            assert r["id"] == rec.short_id and r["image"] == "busybox"
            assert r["state"] == "running" and r["status"].startswith("Up ")
            assert r["uptime"].startswith("0:00:")
        assert "dash-one" in dash.table_text() and "STATUS" in dash.table_text()
        assert len(dash.table.children) == 3  # the header and two rows
        bundle = dash._repr_mimebundle_()
        assert bundle["text/plain"] == "<containerlab Dashboard: 2 containers, auto-refresh>"
        assert "application/vnd.jupyter.widget-view+json" in bundle

        one = dash.row("dash-one")
        assert not one.stop.disabled
        one.stop.click()  # --init forwards SIGTERM: sleep dies at once
        assert lifecycle.get("dash-one").state.status == "exited"
        assert dash.values[one.cid]["state"] == "exited"
        assert dash.values[one.cid]["status"].startswith("Exited (143)")
        assert one.stop.disabled and dash.values[one.cid]["uptime"] == ""
        assert "stop: dash-one" in dash.message.value

        one.logs.click()
        assert "hello from dash-one\nline two\n" in dash.log_view.value
        assert "dash-one" in dash.log_title.value

        two = dash.row("dash-two")
        two.restart.click()
        assert lifecycle.get("dash-two").state.status == "running"
        assert lifecycle.get("dash-two").state.restart_count == 1

        one.remove.click()
        assert "dash-one" not in [r["name"] for r in dash.values_in_order()]
        assert len(dash.table.children) == 2
        assert dash.log_view.value == ""  # the removed container's logs went with it
        with pytest.raises(state.NoSuchContainerError):
            lifecycle.get("dash-one")

        # The timer sees changes made elsewhere (here: the CLI).
        assert clab("rm", "-f", "dash-two").returncode == 0
        _wait_until(lambda: dash.values_in_order() == [])
    finally:
        if dash is not None:
            dash.close()
        for name in names:
            clab("rm", "-f", name)
    assert dash is not None and not dash.refreshing
    dash.refresh()  # a closed dashboard reads nothing any more
    assert dash.rows == {}


def test_dashboard_shows_errors_instead_of_raising():
    res = clab("create", "--name", "dash-new", "busybox", "true")
    assert res.returncode == 0, res.stderr
    dash = vr.Dashboard(refresh_every=None)
    try:
        assert not dash.refreshing
        row = dash.row("dash-new")
        assert dash.values[row.cid]["state"] == "created"
        assert dash.values[row.cid]["status"] == "Created"
        assert row.stop.disabled and row.restart.disabled
        row.logs.click()
        assert "(no output)" in dash.log_view.value
        dash._act("kill", lambda cid: lifecycle.kill(cid), row.cid)
        assert "is not running" in dash.message.value
        with pytest.raises(KeyError):
            dash.row("nobody-here")
    finally:
        dash.close()
        clab("rm", "-f", "dash-new")
