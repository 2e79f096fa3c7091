// The dashboard's only script. Pages work without it; with it, a run's page follows
// the run live, and the schedule page offers the viewer's own time zone.
"use strict";

function followRun(live) {
  const tick = async () => {
    try {
      const res = await fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401 || res.redirected) {
        location.reload();
        return;
      }
      if (res.ok) {
        // What the reader opened stays open.
        const open = [...live.querySelectorAll("details[open][id]")].map((d) => d.id);
        live.innerHTML = await res.text();
        for (const id of open) document.getElementById(id)?.setAttribute("open", "");
        const state = live.querySelector("[data-finished]");
        if (state && state.dataset.finished === "true") {
          live.dataset.finished = "true";
          return;
        }
      }
    } catch (e) {
      // A network hiccup: try again at the next tick.
    }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
}

function offerOwnZone() {
  let zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  for (const a of document.querySelectorAll("a[data-your-zone]")) {
    const url = new URL(a.getAttribute("href"), location.href);
    url.searchParams.set("tz", zone);
    a.setAttribute("href", url.pathname + url.search);
    a.textContent = a.dataset.label + " (" + zone + ")";
    a.hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live && live.dataset.src && live.dataset.finished !== "true") {
    followRun(live);
  }
  offerOwnZone();
});
