// The studio page: tabs, requests to the local server, clip cards.
"use strict";

const $ = id => document.getElementById(id);
const player = new Player();
const midiOut = new MidiOut();
const state = {info: null, library: [], selected: null, cards: new Map(), grooveAB: null, taps: null};
window.studio = {player, state};  // for tests and the console

// ------------------------------------------------------------------------- messages

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

async function call(url, options, button) {
  if (button) { button.disabled = true; button.classList.add("busy"); }
  say("");
  const t0 = performance.now();
  try {
    const response = await fetch(url, options);
    let body;
    try { body = await response.json(); } catch (e) { body = {error: `the server answered ${response.status} without a message`}; }
    if (!response.ok || body.error) throw new Error(body.error || `error ${response.status}`);
    window.studioLastLatencyMs = performance.now() - t0;
    return body;
  } catch (e) {
    say(e.message === "Failed to fetch" ? "the studio server is not reachable (stopped?)" : e.message, true);
    return null;
  } finally {
    if (button) { button.disabled = false; button.classList.remove("busy"); }
  }
}

const postJSON = (url, data, button) => call(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)}, button);
const postForm = (url, form, button) => call(url, {method: "POST", body: form}, button);

// ------------------------------------------------------------------------- clips

function safeName(name) { return name.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "clip"; }

function addToLibrary(clip) {
  state.library.push(clip);
  clip.id = state.library.length;
  for (const pick of document.querySelectorAll(".clip-pick")) {
    const option = document.createElement("option");
    option.value = clip.id;
    option.textContent = `#${clip.id} ${clip.name}`;
    pick.appendChild(option);
  }
}

function select(clip) {
  state.selected = clip;
  for (const [c, card] of state.cards) card.classList.toggle("selected", c === clip);
  $("midi-send").disabled = !(clip && midiOut.port);
}

function card(clip, container, ghost = null, label = null) {
  const div = document.createElement("div");
  div.className = "clip";
  const title = document.createElement("div");
  title.className = "title";
  title.innerHTML = `<span></span><small>${clip.bars} bar${clip.bars > 1 ? "s" : ""} · ${Math.round(clip.qpm)} qpm · ${clip.notes.length} notes</small>`;
  title.firstChild.textContent = (label ? label + ": " : "") + clip.name;
  const canvas = document.createElement("canvas");
  const actions = document.createElement("div");
  actions.className = "actions";
  const play = document.createElement("button");
  play.textContent = "Play";
  play.className = "play";
  play.onclick = () => {
    if (player.clip === clip) { player.stop(); return; }
    player.play(clip);
    select(clip);
  };
  const pick = document.createElement("button");
  pick.textContent = "Select";
  pick.title = "Select for MIDI out";
  pick.onclick = () => select(clip);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(midiBlob(clip));
  link.download = safeName(clip.name) + ".mid";
  link.textContent = "⬇ MIDI";
  link.className = "download";
  link.draggable = true;
  link.addEventListener("dragstart", e => e.dataTransfer.setData("DownloadURL", `audio/midi:${link.download}:${link.href}`));
  actions.append(play, pick, link);
  div.append(title, canvas, actions);
  container.appendChild(div);
  drawClip(canvas, clip, ghost);
  clip.canvas = canvas; clip.ghost = ghost; clip.playButton = play;
  state.cards.set(clip, div);
  canvas.onclick = () => select(clip);
  return div;
}

function showClips(clips, container, {clear = true, library = true, ghost = null} = {}) {
  if (clear) {
    for (const [c, div] of state.cards) if (container.contains(div)) state.cards.delete(c);
    container.innerHTML = "";
  }
  for (const clip of clips) {
    card(clip, container, ghost);
    if (library) addToLibrary(clip);
  }
}

player.onchange = () => {
  for (const [clip, div] of state.cards) {
    div.classList.toggle("playing", player.clip === clip);
    clip.playButton.textContent = player.clip === clip ? "Stop" : "Play";
  }
};

(function animate() {  // playhead on the playing clip
  for (const clip of state.cards.keys()) {
    if (clip.hadPlayhead && player.clip !== clip) { drawClip(clip.canvas, clip, clip.ghost); clip.hadPlayhead = false; }
  }
  if (player.clip && player.clip.canvas) {
    drawClip(player.clip.canvas, player.clip, player.clip.ghost, player.position());
    player.clip.hadPlayhead = true;
  }
  requestAnimationFrame(animate);
})();

// An input for a request: the chosen file, else the picked library clip, as MIDI.
function midiInput(fileInput, pick) {
  if (fileInput.files.length) return [fileInput.files[0], fileInput.files[0].name];
  const clip = state.library[Number(pick.value) - 1];
  if (clip) return [midiBlob(clip), safeName(clip.name) + ".mid"];
  return null;
}

// ------------------------------------------------------------------------- tabs

for (const tab of document.querySelectorAll("#tabs button")) {
  tab.onclick = () => {
    for (const t of document.querySelectorAll("#tabs button")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === "tab-" + tab.dataset.tab);
    for (const clip of state.cards.keys()) if (clip.canvas.offsetParent) drawClip(clip.canvas, clip, clip.ghost);
  };
}
for (const range of document.querySelectorAll("input[type=range]")) {
  const out = document.querySelector(`output[for="${range.id}"]`);
  if (out) { const show = () => { out.textContent = range.value; }; range.oninput = show; show(); }
}
for (const pick of document.querySelectorAll(".clip-pick")) {  // a clip or a file, not both
  pick.innerHTML = '<option value="">(a generated clip…)</option>';
  const file = pick.parentElement.querySelector("input[type=file]");
  pick.addEventListener("change", () => { if (pick.value) file.value = ""; });
  file.addEventListener("change", () => { if (file.files.length) pick.value = ""; });
}

// Drop a file on an input's box (or anywhere on its fieldset) to choose it.
for (const input of document.querySelectorAll("input[type=file]")) {
  const zone = input.closest("fieldset") || input.parentElement;
  zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("drop"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drop"));
  zone.addEventListener("drop", e => {
    e.preventDefault();
    zone.classList.remove("drop");
    if (!e.dataTransfer.files.length) return;
    const wav = /\.wav$/i.test(e.dataTransfer.files[0].name);
    const target = wav ? zone.querySelector("input[type=file][accept*=wav]") || input
                       : zone.querySelector("input[type=file]:not([accept*=wav])") || input;
    target.files = e.dataTransfer.files;
  });
}

// Generate
$("gen-run").onclick = async () => {
  const seed = Number($("gen-seed").value);
  const body = await postJSON("/api/generate", {n: Number($("gen-n").value), temperature: Number($("gen-temp").value), seed}, $("gen-run"));
  if (!body) return;
  showClips(body.clips, $("gen-clips"));
  $("gen-seed").value = seed + 1;
  say(`${body.clips.length} sample(s) in ${Math.round(window.studioLastLatencyMs)} ms`);
};

// Interpolate
$("int-run").onclick = async () => {
  const a = midiInput($("int-a-file"), $("int-a-pick")), b = midiInput($("int-b-file"), $("int-b-pick"));
  if (!a || !b) { say("choose clip A and clip B: a .mid file or a generated clip each", true); return; }
  const form = new FormData();
  form.append("midi_a", ...a); form.append("midi_b", ...b);
  for (const [k, id] of [["start_a", "int-a-bar"], ["start_b", "int-b-bar"], ["steps", "int-steps"], ["method", "int-method"], ["temperature", "int-temp"]]) form.append(k, $(id).value);
  const body = await postForm("/api/interpolate", form, $("int-run"));
  if (!body) return;
  const strip = $("int-strip");
  strip.innerHTML = "";
  const canvases = body.clips.map((clip, i) => {
    const c = document.createElement("canvas");
    c.title = clip.name;
    c.onclick = () => { $("int-slider").value = i; showStep(i); };
    strip.appendChild(c);
    drawClip(c, clip);
    return c;
  });
  for (const clip of body.clips) addToLibrary(clip);
  const showStep = i => {
    canvases.forEach((c, j) => c.classList.toggle("selected", i === j));
    $("int-step-label").textContent = body.clips[i].name;
    const wasPlaying = player.playing;
    const offset = player.position();
    showClips([body.clips[i]], $("int-clips"), {library: false});
    select(body.clips[i]);
    if (wasPlaying) player.play(body.clips[i], offset);
  };
  $("int-slider").max = body.clips.length - 1;
  $("int-slider").value = 0;
  $("int-slider").oninput = () => showStep(Number($("int-slider").value));
  $("int-slider-row").hidden = false;
  showStep(0);
};

// Groove
const grooveTask = () => $("gr-task").value;
$("gr-task").onchange = () => {
  $("gr-taps").hidden = grooveTask() !== "drumify";
  $("gr-groove").hidden = grooveTask() !== "transfer";
  $("gr-keep-row").hidden = grooveTask() !== "infill";
  const model = state.info && state.info.tasks[grooveTask()];
  $("gr-run").title = model ? "model: " + model : "no model for this task: see the message when you run it";
};

$("gr-record").onclick = () => {
  const ctx = player.ensure();
  const qpm = Number($("gr-qpm").value), bars = Number($("gr-bars").value), beat = 60 / qpm;
  const downbeat = ctx.currentTime + 0.1 + 4 * beat;  // after a one-bar count-in
  const end = downbeat + bars * 4 * beat;
  for (let i = 0; i < 4 + bars * 4; i++) player.click(ctx.currentTime + 0.1 + i * beat, i % 4 === 0);
  const taps = {times: [], strengths: [], qpm, bars};
  const onKey = e => {
    if (["Tab", "Escape"].includes(e.key) || e.repeat) return;
    e.preventDefault();
    const t = ctx.currentTime - downbeat;
    if (t < -beat / 4 || ctx.currentTime > end) return;
    taps.times.push(Math.max(0, t));
    taps.strengths.push(e.shiftKey ? 1.0 : 0.6);
    $("gr-tap-status").textContent = `recording… ${taps.times.length} taps`;
  };
  window.addEventListener("keydown", onKey);
  $("gr-record").disabled = true;
  $("gr-tap-status").textContent = "count-in…";
  setTimeout(() => {
    window.removeEventListener("keydown", onKey);
    $("gr-record").disabled = false;
    state.taps = taps.times.length ? taps : null;
    $("gr-tap-status").textContent = `${taps.times.length} taps recorded over ${bars} bars: press Run`;
  }, (end - ctx.currentTime + 0.1) * 1000);
};

$("gr-run").onclick = async () => {
  const task = grooveTask(), form = new FormData();
  const usesTaps = task === "drumify" && !$("gr-file").files.length && !$("gr-pick").value;
  if (usesTaps && $("gr-wav").files.length) {
    form.append("wav", $("gr-wav").files[0]);
    form.append("qpm", $("gr-qpm").value);
  } else if (usesTaps && state.taps) {
    form.append("taps", JSON.stringify(state.taps));
    form.append("qpm", state.taps.qpm);
  } else {
    const input = midiInput($("gr-file"), $("gr-pick"));
    if (!input) { say(task === "drumify" ? "choose a .mid file or a generated clip, record taps, or choose a WAV" : "choose a .mid file or a generated clip", true); return; }
    form.append("midi", ...input);
  }
  if (task === "transfer") {
    const groove = midiInput($("gr-groove-file"), $("gr-groove-pick"));
    if (groove) form.append("groove", ...groove);
  }
  form.append("keep_original", $("gr-keep").checked ? "1" : "0");
  form.append("temperature", $("gr-temp").value);
  const body = await postForm("/api/groove/" + task, form, $("gr-run"));
  if (!body) return;
  const [input] = body.inputs, [output] = body.clips;
  input.name = "input: " + input.name;
  showClips([input], $("gr-clips"), {library: false});
  showClips([output], $("gr-clips"), {clear: false, ghost: input});
  state.grooveAB = [input, output];
  $("gr-ab").disabled = false;
  $("gr-ab-label").textContent = "A: input · B: output (grey under B: the input)";
  say(`${task}: ${output.notes.length} notes from ${input.notes.length} in ${Math.round(window.studioLastLatencyMs)} ms`);
};

$("gr-ab").onclick = () => {  // switch between input and output at the same position
  const [a, b] = state.grooveAB;
  const next = player.clip === b ? a : b;
  const offset = player.playing ? player.position() % next.seconds : 0;
  player.play(next, offset);
  select(next);
  $("gr-ab-label").textContent = `playing ${next === a ? "A (input)" : "B (output)"}`;
};

// Latent
function strengths() {
  const out = {};
  for (const input of document.querySelectorAll("#attr-sliders input")) {
    if (Number(input.value) !== 0) out[input.dataset.name] = Number(input.value);
  }
  return out;
}

$("attr-run").onclick = async () => {
  const body = await postJSON("/api/generate", {n: Number($("attr-n").value), temperature: Number($("lat-temp").value), seed: Number($("gen-seed").value), attributes: strengths()}, $("attr-run"));
  if (body) showClips(body.clips, $("lat-clips"));
};

$("sim-run").onclick = async () => {
  const input = midiInput($("sim-file"), $("sim-pick"));
  if (!input) { say("choose a .mid file or a generated clip to vary", true); return; }
  const form = new FormData();
  form.append("midi", ...input);
  for (const [k, id] of [["start_bar", "sim-bar"], ["similarity", "sim-s"], ["n", "sim-n"], ["temperature", "lat-temp"]]) form.append(k, $(id).value);
  form.append("attributes", JSON.stringify(strengths()));
  const body = await postForm("/api/similar", form, $("sim-run"));
  if (body) showClips(body.clips, $("lat-clips"));
};

// MIDI out
async function setUpMidi() {
  if (!midiOut.available) { $("midi-status").textContent = "Web MIDI is not available in this browser"; $("midi-out").disabled = true; return; }
  try {
    const ports = await midiOut.connect();
    for (const port of ports) {
      const option = document.createElement("option");
      option.value = port.id; option.textContent = port.name;
      $("midi-out").appendChild(option);
    }
    $("midi-status").textContent = ports.length ? "" : "no MIDI output ports";
  } catch (e) {
    $("midi-status").textContent = "MIDI access refused";
  }
}
$("midi-out").onchange = () => { midiOut.select($("midi-out").value); select(state.selected); };
$("midi-send").onclick = () => {
  try {
    midiOut.send(state.selected);
    $("midi-stop").disabled = false;
    $("midi-status").textContent = `looping ${state.selected.name}`;
  } catch (e) { say(e.message, true); }
};
$("midi-stop").onclick = () => { midiOut.stop(); $("midi-stop").disabled = true; $("midi-status").textContent = ""; };

// ------------------------------------------------------------------------- start

(async () => {
  const info = await call("/api/info");
  if (!info) return;
  state.info = info;
  const kind = info.drums ? "drums" : "melody";
  $("model-info").textContent = `${info.model} (${info.config}) · ${info.bars}-bar ${kind} · z ${info.z_size}`;
  for (const id of ["int-a-bar", "int-b-bar", "sim-bar"]) $(id).title = `first bar of the ${info.bars}-bar window`;
  const sliders = $("attr-sliders");
  if (!info.attributes.length) {
    sliders.innerHTML = '<span class="hint">This model has no attribute vectors. Compute one with <code>python -m flax_musicvae.generate --mode=attribute --attribute=note_density</code> and start the studio with <code>--attribute_file=…</code>.</span>';
  }
  for (const name of info.attributes) {
    const label = document.createElement("label");
    label.innerHTML = `<span></span><input type="range" min="-3" max="3" step="0.1" value="0"><output></output>`;
    label.firstChild.textContent = name;
    const input = label.querySelector("input");
    input.dataset.name = name;
    input.oninput = () => { label.querySelector("output").textContent = input.value; };
    input.oninput();
    sliders.appendChild(label);
  }
  $("gr-task").onchange();
  setUpMidi();
})();
