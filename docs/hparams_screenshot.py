"""Screenshot of TensorBoard's HParams parallel-coordinates view of a search, in headless Chromium.

What the README shows is what a user sees: this starts TensorBoard on the experiment folder (bound
to 127.0.0.1 only), opens its HParams dashboard in headless Chromium, switches to the parallel
coordinates view, and saves a PNG. It drives the browser through the DevTools protocol (aiohttp's
websocket client, which Ray installs), because the view is a tab inside the dashboard that no URL
selects. TensorBoard ticks the first five declared hyperparameters (alphabetically) and the first five
metrics; ``--tick-all`` also ticks the remaining searched hyperparameters (the sixth, ``lr``, of the
loss-weight search), as a user would with one click in the sidebar, and the log-searched axes are
switched to a log scale. It prints the columns shown on first open and in the screenshot, and the
browser console's warnings, so a run without a display can be checked too.

    python searches/loss_weights.py --name readme --num-samples 8 --max-epochs 4
    python docs/hparams_screenshot.py results/readme --output docs/hparams_parallel_coordinates.png

Needs Chromium (Debian: ``apt-get install chromium``; or ``--chromium PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

# JavaScript helpers run in the page: TensorBoard's dashboards are web components, so elements
# live in nested shadow roots that document.querySelector does not reach.
DEEP_QUERY = """
function deepAll(selector, root = document, found = []) {
  for (const element of root.querySelectorAll('*')) {
    if (element.matches(selector)) found.push(element);
    if (element.shadowRoot) deepAll(selector, element.shadowRoot, found);
  }
  return found;
}
"""
OPEN_PARALLEL_COORDINATES = DEEP_QUERY + """
(() => {
  const tab = deepAll('paper-tab').find(t => /parallel coordinates/i.test(t.textContent));
  if (!tab) return 'no tab';
  tab.click();
  return 'ok';
})()
"""
TICK_ALL_HPARAMS = DEEP_QUERY + """
(() => {
  const pane = deepAll('tf-hparams-query-pane')[0];
  const ticked = [];
  for (const box of deepAll('paper-checkbox.hparam-checkbox', pane.shadowRoot)) {
    if (!box.checked) { box.click(); ticked.push(box.textContent.trim()); }
  }
  return ticked;
})()
"""
# Each numeric axis of the parallel-coordinates view has a scale chooser; its log button's id names the column.
LOG_AXES = DEEP_QUERY + """
((names) => names.filter(name => {
  const button = deepAll(`paper-radio-button[id="logScaleButton_${name}"]`)[0];
  if (!button || button.disabled) return false;
  button.click();
  return true;
}))(NAMES)
"""
# The ticked (shown) hyperparameter and metric columns, once the sidebar has loaded.
SHOWN_COLUMNS = DEEP_QUERY + """
(() => {
  const pane = deepAll('tf-hparams-query-pane')[0];
  if (!pane) return null;
  const shown = cls => deepAll(`paper-checkbox.${cls}`, pane.shadowRoot).filter(b => b.checked).map(b => b.textContent.trim());
  const hparams = shown('hparam-checkbox');
  return hparams.length ? {hyperparameters: hparams, metrics: shown('metric-checkbox')} : null;
})()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float, what: str) -> bytes:
    """GET ``url`` until it answers (a server starting up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f} s") from None
            time.sleep(0.5)


class DevTools:
    """A minimal DevTools-protocol client: send a command, wait for its reply; keeps the page's
    console warnings and errors (TensorBoard logs malformed HParams data there)."""

    def __init__(self, socket_: aiohttp.ClientWebSocketResponse):
        self.socket = socket_
        self.next_id = 0
        self.console: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive()).data)
            if message.get("method") == "Runtime.consoleAPICalled" and message["params"]["type"] in ("warning", "error"):
                self.console.append(" ".join(str(arg.get("value", arg.get("description", "")))
                                             for arg in message["params"]["args"]))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value not in (None, "no tab"):
                return value
            await asyncio.sleep(0.5)
        raise TimeoutError(f"TensorBoard page: {what} did not appear within {timeout:.0f} s")


async def capture(page_socket_url: str, dashboard: str, output: Path, tick_all: bool, log_axes: list[str],
                  settle: float) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(page_socket_url, max_msg_size=0) as ws:
        tools = DevTools(ws)
        await tools.call("Runtime.enable")
        await tools.call("Page.navigate", url=dashboard)
        shown = await tools.until(SHOWN_COLUMNS, 90, "the HParams sidebar")
        print(f"on first open: hyperparameters {shown['hyperparameters']}, metrics {shown['metrics']}")
        await tools.until(OPEN_PARALLEL_COORDINATES, 30, "the parallel coordinates tab")
        if tick_all:
            print(f"ticked: {await tools.evaluate(TICK_ALL_HPARAMS)}")
        await asyncio.sleep(1)  # the view rebuilds its axes for the new columns
        print(f"log-scale axes: {await tools.evaluate(LOG_AXES.replace('NAMES', json.dumps(log_axes)))}")
        await asyncio.sleep(settle)  # the view draws its axes and lines after the data arrives
        shown = await tools.evaluate(SHOWN_COLUMNS)
        print(f"in the screenshot: hyperparameters {shown['hyperparameters']}, metrics {shown['metrics']}")
        print(f"browser console: {len(tools.console)} warnings/errors" + "".join(f"\n  {line}" for line in tools.console))
        shot = await tools.call("Page.captureScreenshot", format="png")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path, help="the experiment folder of a search (results/<name>)")
    parser.add_argument("--output", type=Path, default=Path("docs/hparams_parallel_coordinates.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    parser.add_argument("--window", default="1500,950", help="browser window size WIDTH,HEIGHT (default: 1500,950)")
    parser.add_argument("--tick-all", action=argparse.BooleanOptionalAction, default=True,
                        help="tick every declared hyperparameter, not only the first five (default: on)")
    parser.add_argument("--log-axis", nargs="*", default=["lr", "lambda_dom"], metavar="NAME",
                        help="axes drawn on a log scale, as searched (default: lr lambda_dom)")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds to let the view draw (default: 6)")
    args = parser.parse_args(argv)
    if not (args.logdir / "leaderboard.csv").is_file():
        parser.error(f"{args.logdir} has no leaderboard.csv: pass the experiment folder of a finished search")
    if not args.chromium or not Path(args.chromium).exists():
        parser.error("no Chromium found: install it (apt-get install chromium) or pass --chromium PATH")

    board_port, devtools_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="tcnvae-chromium-") as profile:
        tensorboard = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host", "127.0.0.1",
             "--port", str(board_port), "--reload_interval", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        browser = subprocess.Popen(
            [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={args.window}", "--hide-scrollbars",
             f"--remote-debugging-port={devtools_port}", "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # TensorBoard answers while it still loads: wait until it lists every trial and the root run.
            trials = len((args.logdir / "leaderboard.csv").read_text().strip().splitlines()) - 1
            deadline = time.monotonic() + 120
            while len(json.loads(wait_for(f"http://127.0.0.1:{board_port}/data/runs", 120, "TensorBoard"))) <= trials:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"TensorBoard did not load the {trials} trials of {args.logdir} within 120 s")
                time.sleep(1)
            targets = json.loads(wait_for(f"http://127.0.0.1:{devtools_port}/json/list", 60, "Chromium"))
            page = next(target for target in targets if target["type"] == "page")
            asyncio.run(capture(page["webSocketDebuggerUrl"], f"http://127.0.0.1:{board_port}/#hparams",
                                args.output, args.tick_all, args.log_axis, args.settle))
        finally:
            browser.terminate()
            tensorboard.terminate()
            browser.wait(timeout=30)
            tensorboard.wait(timeout=30)
    print(f"Screenshot: {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
