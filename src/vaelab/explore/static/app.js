// vaelab explore: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const colour = (label) => label == null ? "#555"
  : label < PALETTE.length ? PALETTE[label] : `hsl(${(label * 137.5) % 360}, 60%, 45%)`;

// A POST answered by a PNG: shown in `img` (an object URL; the previous one released); errors in `errorBox`.
async function postImage(url, body, img, errorBox) {
  const init = body instanceof FormData
    ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(url, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    errorBox.textContent = message;
    return false;
  }
  const old = img.src;
  img.src = URL.createObjectURL(await response.blob());
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  errorBox.textContent = "";
  return true;
}

// At most one request in flight; while one runs, only the latest of the calls made meanwhile is kept.
function latestOnly(send) {
  let busy = false, pending = null;
  const run = async (args) => {
    busy = true;
    try { await send(args); } catch (e) { /* shown by `send` where it can be */ }
    busy = false;
    if (pending !== null) { const next = pending; pending = null; run(next); }
  };
  return (args) => { if (busy) pending = args; else run(args); };
}

async function main() {
  const info = await (await fetch("/api/info")).json();
  const groups = info.groups.length;
  $("model-line").textContent = [
    info.preset, info.dataset && `on ${info.dataset}`,
    `latent_dim ${info.latent_dim}`, groups > 1 ? `${groups} latent groups (sliders: the top one)` : "",
    info.weights && `${info.weights} weights`, `${info.test_images} test images`,
  ].filter(Boolean).join(" · ");
  document.querySelectorAll('input[type="number"][min="0"]').forEach((el) => { el.max = info.test_images - 1; });

  const z = new Array(info.latent_dim).fill(0);
  const lower = { temperature: 0, seed: 0 };
  const decode = latestOnly(async () => {
    const ok = await postImage("/api/decode", { z, temperature: lower.temperature, seed: lower.seed },
                               $("decoded"), $("latent-error"));
    if (ok) $("z-text").textContent = "z = [" + z.map((v) => v.toFixed(2)).join(", ") + "]";
  });

  if (info.map) await setUpMap(info, z, decode);
  else setUpSliders(info, z, decode);
  if (groups > 1) {
    $("lower-box").hidden = false;
    $("lower-t").addEventListener("input", () => {
      lower.temperature = Number($("lower-t").value);
      $("lower-t-out").textContent = lower.temperature.toFixed(2);
      decode();
    });
    $("redraw").addEventListener("click", () => { lower.seed = (lower.seed + 1) % 2147483647; decode(); });
  }
  decode();
  setUpSamples();
  setUpInterpolation();
  setUpReconstruction();
}

async function setUpMap(info, z, decode) {
  $("map-box").hidden = false;
  $("latent-hint").textContent =
    "Each dot is a test image's posterior mean. Move the pointer over the map: the image is decoded there.";
  const p = await (await fetch("/api/points")).json();
  const [x0, x1, y0, y1] = p.bounds;
  const canvas = $("map"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const toPx = (x, y) => [(x - x0) / (x1 - x0) * W, (y1 - y) / (y1 - y0) * H];
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = "#e3e6eb";  // the axes through 0
  ctx.beginPath();
  const [ox, oy] = toPx(0, 0);
  ctx.moveTo(ox, 0); ctx.lineTo(ox, H); ctx.moveTo(0, oy); ctx.lineTo(W, oy);
  ctx.stroke();
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < p.x.length; i++) {
    const [px, py] = toPx(p.x[i], p.y[i]);
    ctx.fillStyle = colour(p.label ? p.label[i] : null);
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  const base = ctx.getImageData(0, 0, W, H);
  const marker = (px, py) => {
    ctx.putImageData(base, 0, 0);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(px, py, 6, 0, 2 * Math.PI);
    ctx.stroke();
  };
  marker(ox, oy);
  canvas.addEventListener("pointermove", (event) => {
    const r = canvas.getBoundingClientRect();
    const px = (event.clientX - r.left) * W / r.width, py = (event.clientY - r.top) * H / r.height;
    z[0] = x0 + px / W * (x1 - x0);
    z[1] = y1 - py / H * (y1 - y0);
    marker(px, py);
    decode();
  });
  const names = info.labels;
  if (p.label) {
    const seen = [...new Set(p.label)].sort((a, b) => a - b);
    for (const label of seen) {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(label);
      item.append(swatch, names ? names[label] : String(label));
      $("legend").append(item);
    }
  }
}

function setUpSliders(info, z, decode) {
  $("sliders-box").hidden = false;
  $("latent-hint").textContent = "One slider per latent dimension, the most informative first " +
    "(the mean KL per dimension on test images, in nats).";
  const [low, high] = info.slider_range;
  const inputs = [];
  for (const d of info.order) {
    const row = document.createElement("label");
    row.className = "slider";
    const name = document.createElement("span");
    name.append(`z${d} `);
    const kl = document.createElement("span");
    kl.className = "kl";
    kl.textContent = `KL ${info.kl_per_dim[d].toFixed(2)}`;
    name.append(kl);
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: low, max: high, step: 0.01, value: 0 });
    input.dataset.dim = d;
    const out = document.createElement("output");
    out.textContent = "0.00";
    input.addEventListener("input", () => {
      z[d] = Number(input.value);
      out.textContent = z[d].toFixed(2);
      decode();
    });
    row.append(name, input, out);
    $("sliders").append(row);
    inputs.push([input, out, d]);
  }
  const setAll = (value) => {
    for (const [input, out, d] of inputs) {
      z[d] = Math.max(low, Math.min(high, value(d)));
      input.value = z[d];
      out.textContent = z[d].toFixed(2);
    }
    decode();
  };
  $("zero").addEventListener("click", () => setAll(() => 0));
  $("random-z").addEventListener("click", () => setAll(() => gaussian()));
}

function gaussian() {  // Box-Muller
  return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
}

function setUpSamples() {
  let seed = 0;
  const sample = latestOnly(() => postImage("/api/sample", {
    n: Number($("sample-n").value), temperature: Number($("sample-t").value), seed,
  }, $("samples"), $("sample-error")));
  $("sample-t").addEventListener("input", () => {
    $("sample-t-out").textContent = Number($("sample-t").value).toFixed(2);
    sample();
  });
  $("sample-n").addEventListener("change", () => sample());
  $("sample-again").addEventListener("click", () => { seed += 1; sample(); });
  sample();
}

function setUpInterpolation() {
  const go = () => {
    const form = new FormData();
    for (const end of ["a", "b"]) {
      const file = $(`interp-${end}-file`).files[0];
      form.append(end, file || $(`interp-${end}`).value);
    }
    form.append("steps", $("interp-steps").value);
    postImage("/api/interpolate", form, $("strip"), $("interp-error"));
  };
  $("interpolate").addEventListener("click", go);
  go();
}

function setUpReconstruction() {
  $("recon-file").addEventListener("change", () => {
    const file = $("recon-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("image", file);
    postImage("/api/reconstruct", form, $("recon"), $("recon-error"));
  });
  const test = () => postImage(
    "/api/reconstruct", { index: Number($("recon-index").value) }, $("recon"), $("recon-error"));
  $("recon-test").addEventListener("click", test);
  test();
}

main().catch((e) => { $("model-line").textContent = `could not start: ${e}`; });
