"""The recorder's Chromium (a real X server, PulseAudio and Chromium): nothing runs in it but the page."""

from __future__ import annotations

import psutil
import pytest

from webrecord.egress.policy import EgressSettings
from webrecord.recorder.browser import BASE_ARGS, DISABLED_FEATURES, ENABLED_FEATURES, Browser
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.stage import Stage

from .conftest import chromium_browser_pids


def assert_last_feature_lists_hold_every_earlier_one(argv: list[str]) -> None:
    """Chromium reads only the last --disable-features and --enable-features. Playwright puts
    its own lists before ours: a feature a later Playwright adds and ours lack shows up here."""
    for flag in ("--disable-features=", "--enable-features="):
        lists = [set(a.removeprefix(flag).split(",")) for a in argv if a.startswith(flag)]
        assert lists, (flag, argv)
        assert not set().union(*lists[:-1]) - lists[-1], f"Playwright's {flag} is not in ours"


def _renderer_flags(browser_pid: int) -> list[list[str]]:
    """The command line of every renderer under the browser process."""
    found = []
    for proc in psutil.Process(browser_pid).children(recursive=True):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if "--type=renderer" in argv:
            found.append(argv)
    return found


@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_chromium_preloads_no_browser_ui_pages(tmp_path):
    """Chromium 156 preloads its WebUI omnibox popups at start: two hidden browser_ui pages in a
    renderer of their own that cost 0.8-0.9 CPU s per start and nothing to the kiosk window.
    Three recordings starting together on 2 cores lost 4-8% of their frames to that burst."""
    stage = Stage(RecorderSettings(), EgressSettings(enabled=False), 640, 360, tmp_path / "logs",
                  tmp_path / "profile")
    (tmp_path / "logs").mkdir()
    try:
        await stage.start()
        assert stage.browser is not None and stage.browser.page is not None
        cdp = await stage.browser.context.new_cdp_session(stage.browser.page)
        targets = (await cdp.send("Target.getTargets"))["targetInfos"]
        assert [t["type"] for t in targets] == ["page"], targets
        browsers = chromium_browser_pids()
        assert len(browsers) == 1, browsers
        renderers = _renderer_flags(browsers[0])
        assert renderers, "no renderer found under Chromium"
        assert not [r for r in renderers if "--top-chrome-webui" in r], renderers
        assert_last_feature_lists_hold_every_earlier_one(psutil.Process(browsers[0]).cmdline())
    finally:
        await stage.close()


def test_a_feature_list_in_the_settings_adds_to_ours_instead_of_replacing_it(tmp_path):
    """Chromium reads only the last --disable-features: WEBRECORD_CHROMIUM_ARGS with one of its
    own would have brought the omnibox popups (and Google requests) back."""
    settings = RecorderSettings(chromium_args=["--disable-features=Mine,Translate",
                                               "--enable-features=Theirs", "--lang=de"])
    args = Browser(settings, 640, 360, {}, tmp_path / "profile", on_hook=print,
                   on_crash=print)._args()
    disabled = [a for a in args if a.startswith("--disable-features=")]
    assert len(disabled) == 1
    names = disabled[0].split("=", 1)[1].split(",")
    assert names == [*DISABLED_FEATURES, "Mine"]
    assert [a for a in args if a.startswith("--enable-features=")] == [
        "--enable-features=" + ",".join([*ENABLED_FEATURES, "Theirs"])]
    assert "--lang=de" in args and args.index(disabled[0]) == BASE_ARGS.index(
        "--disable-features=" + ",".join(DISABLED_FEATURES))
