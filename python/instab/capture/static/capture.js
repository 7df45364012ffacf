// The phone page: name the device once, then send photos of the display, either through the phone's
// own camera app (a file input: the photo goes through its ISP and codec) or the live camera.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const $ = (id) => document.getElementById(id);
let device = localStorage.getItem("instab-device") || "";
let track = null;

function say(text, state) {
  $("result").textContent = text;
  $("result").dataset.state = state;
}

function showName() {
  $("me").textContent = device ? `This phone is "${device}".` : "Name this phone first.";
  $("device").value = device;
}

async function join() {
  const form = new FormData();
  form.append("device", $("device").value.trim());
  const response = await fetch(withToken("/api/join"), { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) return say(`Cannot join: ${body.error}`, "rejected");
  device = body.joined;
  localStorage.setItem("instab-device", device);
  showName();
  say("Joined: now photograph the display.", "joined");
}

async function upload(blob, filename, source) {
  if (!device) return say("Name this phone first (and press Join).", "rejected");
  const form = new FormData();
  form.append("photo", blob, filename);
  form.append("device", device);
  form.append("source", source);
  say(`Sending ${Math.round(blob.size / 1024)} KB…`, "sending");
  try {
    const response = await fetch(withToken("/api/photos"), { method: "POST", body: form });
    const body = await response.json();
    if (response.ok) {
      say(`Accepted: image ${body.image_id + 1} (${body.image}), shot ${body.shot + 1}.`, "accepted");
      $("result").dataset.imageId = String(body.image_id);
    } else {
      say(`Not accepted: ${body.error}`, "rejected");
    }
  } catch (error) {
    say(`Not sent: ${error.message}`, "rejected");
  }
  poll();
}

async function startCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return say("The live camera needs HTTPS: restart the server with --tls (the camera app works as it is).",
               "rejected");
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 4096 }, height: { ideal: 3072 } },
    });
    track = stream.getVideoTracks()[0];
    $("video").srcObject = stream;
    $("video").hidden = false;
    $("shoot").hidden = false;
    await $("video").play();
    const s = track.getSettings();
    say(`Camera on (${s.width}x${s.height}).`, "camera");
  } catch (error) {
    say(`Cannot open the camera: ${error.message}`, "rejected");
  }
}

async function grab() {
  // a still through the camera's photo path where the browser has one, else the current video frame
  if ("ImageCapture" in window) {
    try {
      return [await new ImageCapture(track).takePhoto(), "image-capture"];
    } catch (error) { /* fall back to the video frame */ }
  }
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return [await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.95)), "video-frame"];
}

async function poll() {
  try {
    const response = await fetch(withToken("/api/status"));
    const status = await response.json();
    if (!response.ok) throw new Error(status.error);
    const mine = (status.devices[device] || { current: 0 }).current;
    $("status").textContent = status.done
      ? "The session is over: thank you."
      : `The display shows image ${status.current + 1} of ${status.n_images}; ` +
        `you sent ${mine} of ${status.repeats} shot(s) of it.`;
  } catch (error) {
    $("status").textContent = `Server unreachable: ${error.message}`;
  }
}

$("join").addEventListener("click", join);
$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (file) await upload(file, file.name, "file");
  $("file").value = "";
});
$("start").addEventListener("click", startCamera);
$("shoot").addEventListener("click", async () => {
  const [blob, source] = await grab();
  await upload(blob, "live.jpg", source);
});
showName();
poll();
setInterval(poll, 1500);
