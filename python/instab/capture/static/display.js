// The display page: shows the current frame full size, polls the session's status, and moves on
// when the server does (every device sent its photos), on a key press, or on the session's timer.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const $ = (id) => document.getElementById(id);
let shown = -1;
let session = null;
let timer = null;

async function api(path, options) {
  const response = await fetch(withToken(path), options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function restartTimer() {
  clearTimeout(timer);
  if (session && session.advance_after > 0) timer = setTimeout(() => move(shown + 1), 1000 * session.advance_after);
}

function render(status) {
  if (status.current !== shown) {
    shown = status.current;
    document.body.dataset.current = String(shown);
    delete document.body.dataset.shown;
    if (status.done) {
      $("frame").removeAttribute("src");
      document.body.dataset.done = "1";
    } else {
      $("frame").src = withToken(`/api/frame/${shown}.png`);
      restartTimer();
    }
  }
  $("where").textContent = status.done
    ? `Done: all ${status.n_images} images were shown.`
    : `Image ${status.current + 1} of ${status.n_images} (${status.image}), ${status.repeats} shot(s) per phone`;
  const list = $("devices");
  list.replaceChildren();
  for (const [name, d] of Object.entries(status.devices)) {
    const item = document.createElement("li");
    item.textContent = `${name}: ${d.current}/${status.repeats} of this image, ${d.photos} photos in all`;
    item.className = d.current >= status.repeats ? "complete" : "waiting";
    item.dataset.device = name;
    list.append(item);
  }
  if (!Object.keys(status.devices).length) {
    const item = document.createElement("li");
    item.textContent = "no phone has joined yet: scan the QR code";
    list.append(item);
  }
}

async function poll() {
  try {
    render(await api("/api/status"));
  } catch (error) {
    $("where").textContent = `server unreachable: ${error.message}`;
  }
}

async function move(to) {
  try {
    render(await api(`/api/advance?from=${shown}&to=${to}`, { method: "POST" }));
  } catch (error) {
    $("where").textContent = `could not move on: ${error.message}`;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.key === "ArrowRight" || event.key === " ") move(shown + 1);
  else if (event.key === "ArrowLeft") move(shown - 1);
  else if (event.key === "f") document.documentElement.requestFullscreen().catch(() => {});
  else if (event.key === "h") $("bar").hidden = !$("bar").hidden;
  else return;
  event.preventDefault();
});
$("frame").addEventListener("load", () => { document.body.dataset.shown = String(shown); });

(async () => {
  try {
    session = await api("/api/session");
  } catch (error) {
    $("where").textContent = `cannot open the session: ${error.message}`;
    return;
  }
  $("qr").src = session.qr;
  $("join").textContent = session.join_url;
  await poll();
  setInterval(poll, 700);
})();
