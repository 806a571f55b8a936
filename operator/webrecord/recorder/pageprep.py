"""A task's page control (`spec.page`) applied to a browser context and its page before the
RecordURL loads. Per context and page, not per launch: a standby slot's Chromium was started
before the task was known (recorder/stage.py). Applied again to each relaunch after a crash.

What the caller gave reaches the page and nothing more: headers only to requests for the
RecordURL's host (a third-party resource never sees them), cookies only for that site (the
models refuse other domains), scripts and styles as given.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Request, Route

from webrecord.api.models import PageSpec
from webrecord.api.urls import parse_http_url
from webrecord.logs import event

log = logging.getLogger(__name__)

# Injected before the page's own scripts: a <style> added as soon as the document has a root
# element (an init script may run before it exists).
_STYLE_SCRIPT = """(() => {
  const css = %s;
  const add = () => {
    const s = document.createElement("style");
    s.textContent = css;
    (document.head || document.documentElement).appendChild(s);
  };
  if (document.documentElement) add();
  else new MutationObserver((_m, o) => {
    if (document.documentElement) { o.disconnect(); add(); }
  }).observe(document, {childList: true});
})();"""


class PagePrep:
    def __init__(self, spec: PageSpec, record_url: str, width: int, height: int) -> None:
        self.spec = spec
        parsed = parse_http_url(record_url)
        self.host = parsed.host
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host  # IPv6
        self.origin = f"{parsed.scheme}://{host}" + (
            f":{parsed.port}" if parsed.port not in (80, 443) else "")
        self.width, self.height = width, height
        self.headers = {h.name: h.value for h in spec.headers}

    async def apply(self, context: BrowserContext, page: Page) -> None:
        spec = self.spec
        if spec.cookies:
            await context.add_cookies([self._cookie(c) for c in spec.cookies])
        for script in spec.scripts:
            await context.add_init_script(script=script)
        if spec.styles:
            await context.add_init_script(script=_STYLE_SCRIPT % json.dumps("\n".join(spec.styles)))
        if self.headers:
            # Only requests for the RecordURL's host are intercepted (routing also turns off
            # Chromium's HTTP cache for the context; a recording loads each page once).
            await context.route(self._for_site, self._add_headers)
        if spec.user_agent or spec.device_scale_factor:
            cdp = await context.new_cdp_session(page)
            if spec.user_agent:
                await cdp.send("Emulation.setUserAgentOverride", {"userAgent": spec.user_agent})
            if spec.device_scale_factor:
                # What the page reports and draws at (srcset, canvases sized by it). The layout
                # keeps width x height CSS pixels: headful Chromium shows an emulated viewport
                # at its CSS size in the window, so a smaller one would leave a border.
                await cdp.send("Emulation.setDeviceMetricsOverride", {
                    "width": self.width, "height": self.height,
                    "deviceScaleFactor": spec.device_scale_factor, "mobile": False})
        event(log, "page prepared", cookies=len(spec.cookies), headers=len(self.headers),
              scripts=len(spec.scripts), styles=len(spec.styles),
              user_agent=bool(spec.user_agent), scale=spec.device_scale_factor)

    def _cookie(self, cookie: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": cookie.name, "value": cookie.value,
                                 "secure": cookie.secure, "httpOnly": cookie.http_only,
                                 "sameSite": cookie.same_site}
        if cookie.domain:
            entry.update(domain=cookie.domain, path=cookie.path)
        else:  # a host-only cookie for the RecordURL's host
            entry["url"] = self.origin + cookie.path
        return entry

    def _for_site(self, url: str) -> bool:
        try:
            return (urlsplit(url).hostname or "") == self.host
        except ValueError:
            return False

    async def _add_headers(self, route: Route, request: Request) -> None:
        headers = {**await request.all_headers(), **self.headers}
        await route.continue_(headers=headers)
