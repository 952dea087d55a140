// Sound, pictures and MIDI out for studio clips. A clip is what the server sends:
// {name, midi (base64), qpm, bars, seconds, drums, notes: [[pitch, velocity, start, end, row]]}
// (row: the drum-grid row 0 kick .. 8 ride of a drum note, -1 for pitched notes).
"use strict";

const DRUM_ROWS = ["kick", "snare", "closed hh", "open hh", "low tom", "mid tom", "high tom",
                   "crash", "ride"];

// ------------------------------------------------------------------------- synthesis

class Player {
  constructor() {
    this.ctx = null;        // created on the first play (browsers want a user gesture)
    this.out = null;        // per-playback gain: disconnecting it silences what was scheduled
    this.clip = null;
    this.timer = null;
    this.startedAt = 0;     // AudioContext time of the current loop's bar 1
    this.onchange = () => {};
  }

  ensure() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this.ctx = new Ctx();
      const len = this.ctx.sampleRate;  // one second of white noise, shared by the drums
      this.noise = this.ctx.createBuffer(1, len, this.ctx.sampleRate);
      const data = this.noise.getChannelData(0);
      for (let i = 0; i < len; i++) data[i] = Math.random() * 2 - 1;
    }
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  }

  get playing() { return this.clip !== null; }

  // Position in seconds within the playing clip's loop.
  position() {
    if (!this.clip) return 0;
    const t = this.ctx.currentTime - this.startedAt;
    return ((t % this.clip.seconds) + this.clip.seconds) % this.clip.seconds;
  }

  play(clip, offset = 0, loop = true) {
    this.stop(false);
    const ctx = this.ensure();
    this.out = ctx.createGain();
    this.out.gain.value = 0.8;
    this.out.connect(ctx.destination);
    this.clip = clip;
    this.startedAt = ctx.currentTime + 0.05 - offset;
    this.scheduled = 0;
    const schedule = (loopStart, from) => {
      for (const [pitch, velocity, start, end, row] of clip.notes) {
        if (start < from || start >= clip.seconds) continue;
        const when = loopStart + start;
        const gain = velocity / 127;
        if (row >= 0) this.drum(row, when, gain);
        else if (row === -1 && !clip.drums) this.voice(pitch, when, Math.max(0.05, end - start), gain);
        this.scheduled++;
      }
    };
    schedule(this.startedAt, offset);
    let next = this.startedAt + clip.seconds;
    const tick = () => {  // schedules each next loop a little ahead of time
      if (!loop) { if (ctx.currentTime >= next) this.stop(); return; }
      if (next - ctx.currentTime < 0.3) { schedule(next, 0); next += clip.seconds; }
    };
    this.timer = setInterval(tick, 50);
    window.studioPlayback = {state: ctx.state, clip: clip.name, scheduled: this.scheduled};
    this.onchange();
  }

  stop(notify = true) {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.out) {
      const out = this.out;
      out.gain.setTargetAtTime(0, this.ctx.currentTime, 0.01);
      setTimeout(() => out.disconnect(), 100);
    }
    this.out = null;
    this.clip = null;
    if (notify) this.onchange();
  }

  env(when, attack, decay, peak) {
    const g = this.ctx.createGain();
    g.gain.setValueAtTime(0.0001, when);
    g.gain.exponentialRampToValueAtTime(Math.max(0.0002, peak), when + attack);
    g.gain.exponentialRampToValueAtTime(0.0001, when + attack + decay);
    g.connect(this.out);
    return g;
  }

  noiseHit(when, decay, gain, type, freq, q = 1) {
    const src = this.ctx.createBufferSource();
    src.buffer = this.noise;
    const filter = this.ctx.createBiquadFilter();
    filter.type = type;
    filter.frequency.value = freq;
    filter.Q.value = q;
    src.connect(filter).connect(this.env(when, 0.001, decay, gain));
    src.start(when, Math.random() * 0.5, decay + 0.05);
  }

  tone(when, f0, f1, decay, gain, type = "sine") {
    const osc = this.ctx.createOscillator();
    osc.type = type;
    osc.frequency.setValueAtTime(f0, when);
    osc.frequency.exponentialRampToValueAtTime(f1, when + decay);
    osc.connect(this.env(when, 0.002, decay, gain));
    osc.start(when);
    osc.stop(when + decay + 0.05);
  }

  // A small synthesized kit, one voice per GrooVAE drum class.
  drum(row, when, gain) {
    switch (row) {
      case 0: this.tone(when, 150, 45, 0.35, gain * 1.2); break;                      // kick
      case 1: this.tone(when, 220, 160, 0.12, gain * 0.5, "triangle");                 // snare
              this.noiseHit(when, 0.18, gain * 0.7, "bandpass", 1800, 0.7); break;
      case 2: this.noiseHit(when, 0.05, gain * 0.5, "highpass", 7000); break;          // closed hh
      case 3: this.noiseHit(when, 0.3, gain * 0.45, "highpass", 6500); break;          // open hh
      case 4: this.tone(when, 110, 80, 0.3, gain * 0.8); break;                        // low tom
      case 5: this.tone(when, 160, 115, 0.25, gain * 0.8); break;                      // mid tom
      case 6: this.tone(when, 230, 170, 0.2, gain * 0.8); break;                       // high tom
      case 7: this.noiseHit(when, 1.2, gain * 0.4, "highpass", 4000, 0.5); break;      // crash
      case 8: this.noiseHit(when, 0.5, gain * 0.25, "bandpass", 9000, 2);              // ride
              this.tone(when, 3200, 3100, 0.4, gain * 0.05, "square"); break;
    }
  }

  // A synth voice for pitched notes: detuned saw + triangle through a low-pass.
  voice(pitch, when, duration, gain) {
    const freq = 440 * Math.pow(2, (pitch - 69) / 12);
    const g = this.ctx.createGain();
    g.gain.setValueAtTime(0.0001, when);
    g.gain.exponentialRampToValueAtTime(0.25 * gain + 0.0002, when + 0.01);
    g.gain.setTargetAtTime(0.15 * gain, when + 0.01, 0.1);
    g.gain.setTargetAtTime(0.0001, when + duration, 0.05);
    const filter = this.ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = 2500;
    filter.connect(g).connect(this.out);
    for (const [type, detune] of [["sawtooth", -6], ["triangle", 5]]) {
      const osc = this.ctx.createOscillator();
      osc.type = type;
      osc.frequency.value = freq;
      osc.detune.value = detune;
      osc.connect(filter);
      osc.start(when);
      osc.stop(when + duration + 0.4);
    }
  }

  click(when, accent) {  // metronome
    this.ensure();
    if (!this.out) { this.out = this.ctx.createGain(); this.out.connect(this.ctx.destination); }
    this.tone(when, accent ? 1800 : 1200, accent ? 1700 : 1100, 0.05, 0.4, "square");
  }
}

// ------------------------------------------------------------------------- pictures

// Drum grid (9 rows, kick at the bottom) or piano roll; notes at their real times, so a
// humanized groove shows its push and pull against the 16th grid. `ghost`: a clip drawn
// underneath in grey (the input, for A/B by picture).
function drawClip(canvas, clip, ghost = null, playhead = null) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 440, h = canvas.clientHeight || 130;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const seconds = Math.max(clip.seconds, ghost ? ghost.seconds : 0);
  const steps = Math.round(seconds / (15 / clip.qpm));
  let rows, rowOf, label;
  if (clip.drums || (ghost && ghost.drums)) {
    rows = DRUM_ROWS.length; rowOf = n => n[4]; label = i => DRUM_ROWS[i];
  } else {
    const pitches = clip.notes.concat(ghost ? ghost.notes : []).map(n => n[0]);
    const lo = Math.min(...pitches, 60) - 1, hi = Math.max(...pitches, 72) + 1;
    rows = hi - lo + 1; rowOf = n => n[0] - lo; label = i => ((i + lo) % 12 === 0 ? "C" + ((i + lo) / 12 - 1) : "");
  }
  const compact = w < 200;  // strip thumbnails: no row labels
  const left = compact ? 0 : clip.drums ? 54 : 28, rh = h / rows, x = t => left + (t / seconds) * (w - left);
  g.font = "9px sans-serif"; g.textBaseline = "middle";
  for (let i = 0; i < rows; i++) {
    const y = h - (i + 1) * rh;
    if (i % 2 === 0) { g.fillStyle = "#f0efeb"; g.fillRect(left, y, w - left, rh); }
    const text = label(i);
    if (text && rh >= 6 && !compact) { g.fillStyle = "#888"; g.fillText(text, 2, y + rh / 2); }
  }
  for (let s = 0; s <= steps; s++) {  // 16ths faint, beats darker, bars red
    if (compact && s % 16 !== 0) continue;
    g.fillStyle = s % 16 === 0 ? "#d2553c" : s % 4 === 0 ? "#bbb" : "#e4e4e4";
    g.fillRect(Math.round(x(s * 15 / clip.qpm)), 0, 1, h);
  }
  const stepW = Math.max(2, (w - left) / Math.max(steps, 1) * 0.8);
  const paint = (c, colour) => {
    for (const n of c.notes) {
      const row = rowOf(n);
      if (row < 0 || row >= rows) continue;
      const wid = clip.drums ? stepW : Math.max(2, x(n[3]) - x(n[2]) - 1);
      g.globalAlpha = 0.3 + 0.7 * n[1] / 127;
      g.fillStyle = colour;
      g.fillRect(x(n[2]), h - (row + 1) * rh + 1, wid, Math.max(1, rh - 2));
    }
    g.globalAlpha = 1;
  };
  if (ghost) paint(ghost, "#9a9a9a");
  paint(clip, clip.drums ? "#222" : "#2d6cb5");
  if (playhead !== null) { g.fillStyle = "#d2553c"; g.fillRect(x(playhead), 0, 2, h); }
}

// ------------------------------------------------------------------------- MIDI out

class MidiOut {
  constructor() { this.access = null; this.port = null; this.timer = null; this.pending = []; }

  get available() { return typeof navigator.requestMIDIAccess === "function"; }

  async connect() {
    this.access = await navigator.requestMIDIAccess();
    return Array.from(this.access.outputs.values());
  }

  select(id) {
    this.port = id && this.access ? this.access.outputs.get(id) || null : null;
  }

  // Loops `clip` to the port at its own tempo: events are scheduled 200 ms ahead with
  // timestamps, so the timing does not depend on when the timer fires.
  send(clip) {
    this.stop();
    if (!this.port) throw new Error("choose a MIDI output port first");
    const port = this.port, on = clip.drums ? 0x99 : 0x90, off = clip.drums ? 0x89 : 0x80;
    const events = [];
    for (const [pitch, velocity, start, end] of clip.notes) {
      if (start >= clip.seconds) continue;
      events.push([start, [on, pitch, velocity]]);
      events.push([Math.min(end, clip.seconds - 0.001), [off, pitch, 0]]);
    }
    events.sort((a, b) => a[0] - b[0]);
    let loopStart = performance.now() + 100, index = 0;
    const tick = () => {
      const horizon = performance.now() + 200;
      while (loopStart + events[index][0] * 1000 < horizon) {
        port.send(events[index][1], loopStart + events[index][0] * 1000);
        if (++index === events.length) { index = 0; loopStart += clip.seconds * 1000; }
      }
    };
    if (events.length) { tick(); this.timer = setInterval(tick, 50); }
    this.channel = clip.drums ? 9 : 0;
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.port && this.channel !== undefined) {
      this.port.send([0xB0 | this.channel, 123, 0], performance.now() + 250);  // all notes off
    }
  }
}

function midiBlob(clip) {
  const bytes = Uint8Array.from(atob(clip.midi), c => c.charCodeAt(0));
  return new Blob([bytes], {type: "audio/midi"});
}
