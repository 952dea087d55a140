"""The studio: its HTTP API (Flask test client) and its page in a real headless browser.

One shipped model (groove_2bar_humanize) serves generate, similar, interpolate and
humanize, loaded once for the module; batches of 1 and 2 keep the compiled shapes few.
The browser test drives Debian's chromium through selenium with /usr/bin/chromedriver
(Selenium Manager never runs, nothing is downloaded); it skips without them. With
FLAX_MUSICVAE_STUDIO_SCREENSHOTS=DIR it uses groove_4bar as the main model and saves a
PNG of each tab to DIR (docs/studio/ holds the committed ones).
"""

import base64
import io
import json
import os
import pathlib
import shutil
import threading
import time

import note_seq
import pytest

from flax_musicvae import inference
from flax_musicvae.studio import __main__ as studio_main
from flax_musicvae.studio import engine

pytest.importorskip("flask", reason="the studio needs the [studio] extra (Flask)")
from flax_musicvae.studio import server  # noqa: E402  # pylint: disable=g-import-not-at-top

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "groove"
BEAT = FIXTURES / "drummer1" / "session1" / "145_latin-brazilian-baiao_95_beat_4-4.mid"  # 12 bars
FILL = FIXTURES / "drummer1" / "session1" / "105_funk_95_fill_4-4.mid"  # 2 bars
SIX_EIGHT = FIXTURES / "drummer6" / "session1" / "3_rock_80_beat_6-8.mid"
SCREENSHOTS = os.environ.get("FLAX_MUSICVAE_STUDIO_SCREENSHOTS")
TASK_MODEL = engine.ModelSource(pretrained="groove_2bar_humanize")
# A random direction in z as an attribute vector; the screenshots use groove_4bar's real
# note-density vector (python -m flax_musicvae.generate --mode=attribute
# --attribute=note_density --model=groove_4bar, on the Groove validation split).
ATTR = "note_density" if SCREENSHOTS else "random_direction"
DENSITY = pathlib.Path(__file__).parents[1] / "flax_musicvae" / "pretrained" / "groove_4bar" / "attribute_note_density.npz"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
  from flax_musicvae import attributes
  from flax_musicvae import pretrained
  import numpy as np
  main = engine.ModelSource(pretrained="groove_4bar") if SCREENSHOTS else TASK_MODEL
  config = json.loads((pretrained.model_dir(main.pretrained) / "config.json").read_text())
  direction = np.random.default_rng(0).standard_normal(config["model"]["z_size"])
  vector = attributes.AttributeVector(ATTR, direction.astype(np.float32), {})
  path = DENSITY if SCREENSHOTS else vector.save(
      tmp_path_factory.mktemp("attributes") / f"{ATTR}.npz")
  s = engine.Studio(main, {"humanize": TASK_MODEL}, [str(path)])
  s.warm()
  return s


@pytest.fixture(scope="module")
def client(studio):
  return server.create_app(studio, max_upload_bytes=64 * 1024).test_client()


def _midi(clip) -> note_seq.NoteSequence:
  return note_seq.midi_to_note_sequence(base64.b64decode(clip["midi"]))


def _upload(path_or_bytes, name="clip.mid"):
  data = path_or_bytes
  if not isinstance(data, bytes):
    data = pathlib.Path(data).read_bytes()
  return (io.BytesIO(data), name)


# ----------------------------------------------------------------------------- API


def test_generate_returns_parseable_midi_of_the_model_length(client, studio):
  r = client.post("/api/generate", json={"n": 2, "temperature": 0.5, "seed": 7})
  assert r.status_code == 200, r.json
  clips = r.json["clips"]
  assert len(clips) == 2 and clips[0]["notes"] != clips[1]["notes"]
  bars = engine.window_bars(studio.model(studio.main))
  for c in clips:
    ns = _midi(c)
    assert len(ns.notes) == len(c["notes"]) > 0
    assert all(n.is_drum for n in ns.notes)
    assert c["bars"] == bars and c["seconds"] == pytest.approx(bars * 2.0)  # 120 qpm
    assert max(n.start_time for n in ns.notes) < c["seconds"]
  # The same seed gives the same clips; another seed others.
  again = client.post("/api/generate", json={"n": 2, "seed": 7}).json["clips"]
  assert [c["notes"] for c in again] == [c["notes"] for c in clips]
  other = client.post("/api/generate", json={"n": 2, "seed": 8}).json["clips"]
  assert [c["notes"] for c in other] != [c["notes"] for c in clips]


def test_humanize_a_groove_file_returns_a_performance(client):
  r = client.post("/api/groove/humanize", data={"midi": _upload(FILL, FILL.name)})
  assert r.status_code == 200, r.json
  (out,), (inp,) = r.json["clips"], r.json["inputs"]
  ns, source = _midi(out), inference.read_midi(FILL)
  assert inp["bars"] == out["bars"] == engine.bar_count(source) == 2
  assert out["name"] == f"humanize of {FILL.name}"
  assert ns.tempos[0].qpm == pytest.approx(source.tempos[0].qpm, rel=1e-3)
  assert len(ns.notes) > 0 and all(n.is_drum for n in ns.notes)
  assert max(n.start_time for n in ns.notes) < out["seconds"] + 0.1


def test_interpolate_and_similar_take_a_window_by_start_bar(client):
  data = {"midi_a": _upload(BEAT, "a.mid"), "midi_b": _upload(BEAT, "b.mid"), "start_a": "1",
          "start_b": "7", "steps": "2", "temperature": "0"}
  r = client.post("/api/interpolate", data=data)
  assert r.status_code == 200, r.json
  ends = r.json["clips"]
  assert [c["name"] for c in ends] == ["step 1/2 (t=0.00)", "step 2/2 (t=1.00)"]
  assert ends[0]["notes"] != ends[1]["notes"]  # bars 1-2 and 7-8 differ
  r = client.post("/api/interpolate", data={"midi_a": _upload(BEAT, "a.mid"),
                                            "midi_b": _upload(BEAT, "b.mid"), "start_b": "12"})
  assert r.status_code == 400
  assert r.json["error"] == "b.mid has 12 bars: a 2-bar window starts at bar 1 .. 11, not 12"
  r = client.post("/api/similar", data={"midi": _upload(BEAT), "start_bar": "3", "n": "2",
                                        "similarity": "1", "temperature": "0"})
  assert r.status_code == 200, r.json
  a, b = r.json["clips"]
  assert a["notes"] == b["notes"]  # similarity 1, greedy: both decode the window's mu
  r = client.post("/api/similar", data={"midi": _upload(BEAT), "start_bar": "7", "n": "2",
                                        "similarity": "1", "temperature": "0"})
  assert r.json["clips"][0]["notes"] == ends[1]["notes"]  # interpolation's end: bars 7-8


def test_attribute_sliders_shift_z(client):
  assert client.get("/api/info").json["attributes"] == [ATTR]
  plain = client.post("/api/generate", json={"n": 1, "seed": 3}).json["clips"]
  zero = client.post("/api/generate", json={"n": 1, "seed": 3, "attributes": {ATTR: 0}})
  assert [c["notes"] for c in zero.json["clips"]] == [c["notes"] for c in plain]
  pushed = client.post("/api/generate", json={"n": 1, "seed": 3, "attributes": {ATTR: 3}})
  assert [c["notes"] for c in pushed.json["clips"]] != [c["notes"] for c in plain]
  r = client.post("/api/generate", json={"attributes": {"density": 1}})
  assert r.status_code == 400
  assert r.json["error"] == f"no attribute vector 'density'; have ['{ATTR}']"


def test_bad_uploads_get_clear_4xx_messages(client):
  def post(data, name="x.mid", task="humanize"):
    return client.post(f"/api/groove/{task}", data={"midi": _upload(data, name)})

  r = post(b"RIFF....WAVEfmt ", "song.wav")
  assert r.status_code == 400
  assert r.json == {"error": "song.wav: not a MIDI file (no 'MThd' header); use a Standard "
                             "MIDI file (.mid), e.g. exported from your DAW"}
  r = post(b"MThd\x00\x00\x00\x06broken")
  assert r.status_code == 400 and r.json["error"].startswith("x.mid: cannot parse the MIDI file")
  r = post(b"MThd" + bytes(100 * 1024))
  assert r.status_code == 413
  assert r.json["error"] == ("the upload is larger than 64 KB; choose a smaller MIDI or WAV "
                             "file")
  r = post(SIX_EIGHT.read_bytes(), SIX_EIGHT.name)
  assert r.status_code == 400 and "6/8" in r.json["error"]
  r = client.post("/api/groove/humanize", data={})
  assert r.status_code == 400 and r.json["error"] == "choose the input clip (a .mid file)"
  r = client.post("/api/groove/transfer", data={"midi": _upload(BEAT)})
  assert r.status_code == 400 and "--transfer_model=WORKDIR" in r.json["error"]
  r = client.post("/api/generate", json={"n": 1000})
  assert r.status_code == 400 and r.json["error"] == "samples must be 1 .. 16, got 1000"
  for r in (post(b""), post(b"MThd"), client.post("/api/generate", data="{")):
    assert r.status_code == 400 and "Traceback" not in r.get_data(as_text=True)


def test_survives_100_malformed_requests_then_serves(client):
  bad = [
      lambda i: client.post("/api/generate", data=b"\xff" * i, content_type="application/json"),
      lambda i: client.post("/api/generate", json={"n": "many", "temperature": [i]}),
      lambda i: client.post("/api/groove/humanize", data={"midi": _upload(bytes([i % 256]) * i)}),
      lambda i: client.post("/api/groove/humanize",
                            data={"midi": _upload(b"MThd\x00\x00\x00\x06" + bytes([i % 256]) * i)}),
      lambda i: client.post("/api/interpolate", data={"steps": "x" * i}),
      lambda i: client.post("/api/similar", data={"midi": _upload(BEAT), "start_bar": str(-i)}),
      lambda i: client.post(f"/api/groove/nope{i}"),
      lambda i: client.get(f"/api/../../etc/passwd{i}"),
      lambda i: client.post("/api/groove/drumify", data={"taps": "{" * i, "qpm": "nan"}),
      lambda i: client.post("/api/groove/drumify",
                            data={"wav": _upload(b"RIFF" + bytes(i % 7), "t.wav")}),
  ]
  statuses = []
  for i in range(100):
    r = bad[i % len(bad)](i + 1)
    statuses.append(r.status_code)
    body = r.get_data(as_text=True)
    assert "Traceback" not in body and json.loads(body)["error"], body
  assert all(400 <= s < 500 for s in statuses), statuses
  r = client.post("/api/generate", json={"n": 1, "seed": 1})
  assert r.status_code == 200 and _midi(r.json["clips"][0]).notes


def test_keyboard_taps_become_a_tap_sequence(studio):
  ns = studio.taps([0.5, 0.0, 1.0], [0.2, 1.0, 0.5], qpm=90)
  assert [n.start_time for n in ns.notes] == [0.0, 0.5, 1.0]
  assert [n.velocity for n in ns.notes] == [127, 57, 83]  # 40 + 87 * strength
  assert ns.tempos[0].qpm == 90 and all(n.is_drum for n in ns.notes)
  with pytest.raises(engine.StudioError, match="no taps recorded"):
    studio.taps([], [], 90)
  with pytest.raises(engine.StudioError, match="tempo must be 20 .. 300 qpm, got 1000"):
    studio.taps([0.0], [1.0], 1000)


def test_default_bind_is_localhost(monkeypatch, studio):
  import flask
  assert studio_main.build_parser().parse_args([]).host == "127.0.0.1"
  seen = {}
  monkeypatch.setattr(studio_main, "make_studio", lambda args: studio)
  monkeypatch.setattr(inference, "enable_compilation_cache", lambda: None)
  monkeypatch.setattr(flask.Flask, "run", lambda self, **kw: seen.update(kw))
  assert studio_main.main(["--no_warm"]) == 0
  assert seen["host"] == "127.0.0.1" and seen["port"] == studio_main.DEFAULT_PORT


def test_cli_errors_are_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    studio_main.main(["--config=configs/groove_4bar.py"])
  assert e.value.code == 2
  assert capsys.readouterr().err == "error: --config goes with --checkpoint_file\n"


# ----------------------------------------------------------------------------- the page


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def live_url(studio):
  from werkzeug import serving
  httpd = serving.make_server("127.0.0.1", 0, server.create_app(studio), threaded=True)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_port}/"
  httpd.shutdown()
  thread.join(5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                "chromium-driver)")
  webdriver = pytest.importorskip("selenium.webdriver")
  from selenium.webdriver.chrome.service import Service
  downloads = tmp_path_factory.mktemp("downloads")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
               "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
               "--mute-audio"):
    options.add_argument(flag)
  options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                            "download.prompt_for_download": False})
  driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
  driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                         {"behavior": "allow", "downloadPath": str(downloads)})
  driver.downloads = downloads
  yield driver
  driver.quit()


def _wait(driver, condition, timeout=60.0, what="the page"):
  from selenium.common.exceptions import StaleElementReferenceException
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    try:
      value = condition()
    except StaleElementReferenceException:  # the page redrew the element meanwhile
      value = None
    if value:
      return value
    time.sleep(0.1)
  message = driver.execute_script("return document.getElementById('message').textContent")
  raise AssertionError(f"timed out waiting for {what}; page message: {message!r}")


def _shot(driver, name):
  if SCREENSHOTS:
    pathlib.Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(pathlib.Path(SCREENSHOTS) / f"{name}.png"))


def test_page_end_to_end_in_headless_chromium(browser, live_url, tmp_path):
  from selenium.webdriver.common.by import By
  d = browser
  find = lambda css: d.find_element(By.CSS_SELECTOR, css)  # noqa: E731
  cards = lambda css: d.find_elements(By.CSS_SELECTOR, css + " .clip")  # noqa: E731
  d.get(live_url)
  _wait(d, lambda: "z " in find("#model-info").text, what="the model info")

  # Generate, play (the audio graph runs), download and parse the MIDI.
  find("#gen-n").clear()
  find("#gen-n").send_keys("2")
  find("#gen-run").click()
  _wait(d, lambda: len(cards("#gen-clips")) == 2, what="2 generated clips")
  cards("#gen-clips")[0].find_element(By.CSS_SELECTOR, "button.play").click()
  playback = _wait(d, lambda: d.execute_script(
      "return window.studioPlayback && studio.player.ctx.state === 'running' && "
      "window.studioPlayback"), what="the audio context to run")
  assert playback["scheduled"] > 0
  assert "playing" in cards("#gen-clips")[0].get_attribute("class")
  _shot(d, "generate")
  notes = d.execute_script("return studio.state.library[0].notes.length")
  cards("#gen-clips")[0].find_element(By.CSS_SELECTOR, "a.download").click()
  path = _wait(d, lambda: next(iter(d.downloads.glob("*.mid")), None), what="the download")
  time.sleep(0.2)
  assert len(note_seq.midi_file_to_note_sequence(str(path)).notes) == notes > 0
  find("#gen-clips .clip button.play").click()  # stop

  # MIDI out (headless chromium has no MIDI ports): a recording port gets the loop.
  sent = d.execute_async_script("""
    const done = arguments[arguments.length - 1], out = new MidiOut(), events = [];
    out.port = {send: (data, when) => events.push([data, when])};
    out.send({drums: true, seconds: 0.2, notes: [[36, 100, 0, 0.05, 0], [42, 80, 0.1, 0.15, 2]]});
    setTimeout(() => { out.stop(); done(events); }, 600);""")
  data = [e[0] for e in sent]
  assert data[:4] == [[0x99, 36, 100], [0x89, 36, 0], [0x99, 42, 80], [0x89, 42, 0]]
  assert data[4:8] == data[:4] and data[-1] == [0xB9, 123, 0]  # looped; all notes off
  assert sent[4][1] - sent[0][1] == pytest.approx(200, abs=0.01)  # the clip's 0.2 s loop

  # Interpolate between the two generated clips.
  find("[data-tab=interpolate]").click()
  steps = 5 if SCREENSHOTS else 2  # the tests' batches stay 1 or 2
  for pick in ("#int-a-pick", "#int-b-pick"):
    find(pick).click()
  d.execute_script("document.getElementById('int-a-pick').value = '1';"
                   "document.getElementById('int-b-pick').value = '2';"
                   f"document.getElementById('int-steps').value = '{steps}';")
  find("#int-run").click()
  _wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#int-strip canvas")) == steps,
        what="the interpolation strip")
  _shot(d, "interpolate")

  # Groove: humanize a real Groove file, A/B; then a broken file's message.
  find("[data-tab=groove]").click()
  find("#gr-file").send_keys(str(FILL))
  find("#gr-run").click()
  _wait(d, lambda: len(cards("#gr-clips")) == 2, what="humanize's input and output")
  assert find("#message").text.startswith("humanize: ")
  find("#gr-ab").click()
  _wait(d, lambda: d.execute_script("return window.studioPlayback.clip").startswith("humanize"),
        what="B to play")
  _shot(d, "groove")
  find("#gr-ab").click()
  broken = tmp_path / "broken.mid"
  broken.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
  find("#gr-file").send_keys(str(broken))
  find("#gr-run").click()
  _wait(d, lambda: "error" in find("#message").get_attribute("class"), what="an error")
  assert find("#message").text.startswith("broken.mid: cannot parse the MIDI file")
  assert "Traceback" not in d.page_source

  # Latent: attribute slider and similar variations of generated clip 1.
  find("[data-tab=latent]").click()
  assert find("#attr-sliders input").get_attribute("data-name") == ATTR
  d.execute_script("document.getElementById('sim-pick').value = '1';"
                   "document.getElementById('sim-n').value = '2';")
  find("#sim-run").click()
  _wait(d, lambda: len(cards("#lat-clips")) == 2, what="2 similar clips")
  if SCREENSHOTS:  # denser grooves from the note-density slider
    d.execute_script("const s = document.querySelector('#attr-sliders input'); s.value = 1.5;"
                     "s.oninput(); document.getElementById('attr-n').value = '2';")
    find("#attr-run").click()
    _wait(d, lambda: "(s=" not in cards("#lat-clips")[0].text, what="2 dense samples")
  _shot(d, "latent")
  logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
  assert [e["message"] for e in logs if "400" not in e["message"]] == []  # the broken file: 400
