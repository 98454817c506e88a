"""The page in a real browser (Debian's headless Chromium driven by Selenium): a message sent
streams a reply that grows on screen, the model's tool call and the tool's output render in
their own boxes, the reply's words are the engine's; stop aborts and the server frees the
row; editing a past message regenerates from there. A screenshot is kept as an artifact."""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from week12_nanochat.engine import ChatEngine, Sampling
from week12_nanochat.serve import ServeConfig, create_app, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"no {' and '.join(missing)}: `apt-get install chromium "
    "chromium-driver` (or `make setup-browser`)")

QUESTION = "Compute 7 * 6."
# records every change of the last assistant bubble's text length (the reply growing)
WATCH = """
window.__lengths = [];
new MutationObserver(() => {
  const b = document.querySelectorAll('.msg.assistant');
  if (b.length) window.__lengths.push(b[b.length - 1].textContent.length);
}).observe(document.getElementById('log'), {subtree: true, childList: true,
                                            characterData: true});
"""


class _Slow:
    """An engine whose events come at a human pace (the page has time to show each); with
    ``hold`` set, row 0 holds after its first words until ``go`` (a stop at a known point)."""

    def __init__(self, engine, delay=0.02, hold=False):
        self.engine, self.delay, self.hold = engine, delay, hold
        self.reached, self.go, self.cancelled = threading.Event(), threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, *args, **kwargs):
        inner, slow = self.engine.stream(*args, **kwargs), self

        class Stream:
            def cancel(self, row):
                slow.cancelled.append(row)
                inner.cancel(row)

            def __iter__(self):
                for e in inner:
                    yield e
                    time.sleep(slow.delay)
                    if slow.hold and e.kind == "text" and not slow.reached.is_set():
                        slow.reached.set()
                        slow.go.wait(30)

        return Stream()


@pytest.fixture
def browser():
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                              options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _artifact(tmp_path, name: str) -> Path:
    folder = Path(os.environ.get("NANOCHAT_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def _send(driver, text):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "input")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def _bubbles(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")


@pytest.mark.core
def test_the_page_streams_a_reply_with_its_tool_call(browser, engine, tmp_path):
    from selenium.webdriver.common.by import By

    ref = engine.reply(QUESTION, Sampling(max_tokens=256))
    assert ref.calls  # the tool model calls the calculator here
    app = create_app(_Slow(engine), ServeConfig(), model_id="tiny")
    with running(app) as url:
        browser.get(url + "/")
        _wait(browser, lambda d: "tiny" in d.find_element(By.ID, "model").text)
        browser.execute_script(WATCH)
        _send(browser, QUESTION)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant.done"))
        bubble = _bubbles(browser)[-1]
        lengths = browser.execute_script("return window.__lengths")
        calls = [e.text for e in bubble.find_elements(By.CSS_SELECTOR, ".seg.call")]
        outputs = [e.text for e in bubble.find_elements(By.CSS_SELECTOR, ".seg.output")]
        segs = [(e.get_attribute("data-kind"), e.text)
                for e in bubble.find_elements(By.CSS_SELECTOR, ".seg")]
        meta = bubble.find_element(By.CSS_SELECTOR, ".meta").text
        shot = _artifact(tmp_path, "week12-page.png")
        browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert len(set(lengths)) >= 5 and lengths == sorted(lengths)  # it grew, chunk by chunk
    assert len(calls) >= len(ref.calls) and len(outputs) == len(ref.calls)
    assert all(c.output.strip().startswith(o.strip()) for o, c in zip(outputs, ref.calls))
    last = max(i for i, (k, _) in enumerate(segs) if k == "output")
    assert "".join(t for k, t in segs[last + 1:] if k == "text").strip() == ref.text
    assert "base model" in meta and shot.stat().st_size > 0


@pytest.mark.stretch
def test_stop_frees_the_row_and_an_edit_regenerates(browser, chat_tok, make_llama, tmp_path):
    from selenium.webdriver.common.by import By

    engine = ChatEngine(make_llama(chat_tok.vocab_size, seed=0), chat_tok, tools={})
    slow = _Slow(engine, delay=0.0, hold=True)
    app = create_app(slow, ServeConfig(), model_id="tiny")
    with running(app) as url:
        browser.get(url + "/")
        _wait(browser, lambda d: "tiny" in d.find_element(By.ID, "model").text)
        _send(browser, "hi")
        assert slow.reached.wait(30)
        browser.find_element(By.ID, "stop").click()
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".meta.stopped"))
        _wait(browser, lambda d: slow.cancelled == [0])  # the server heard the abort
        slow.go.set()
        _wait(browser, lambda d: app.state.batcher.finished)
        assert app.state.batcher.finished[-1].replies[0].finish_reason == "cancelled"
        # edit the first message: the conversation restarts from it
        browser.find_element(By.CSS_SELECTOR, ".msg.user .edit").click()
        assert browser.find_element(By.ID, "input").get_attribute("value") == "hi"
        _send(browser, "hello")
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant.done"))
        users = [e.text.replace("edit", "").strip()
                 for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user")]
        bubbles = _bubbles(browser)
        text = bubbles[-1].find_element(By.CSS_SELECTOR, ".seg.text").text
        browser.save_screenshot(str(_artifact(tmp_path, "week12-page-edit.png")))
    assert users == ["hello"] and len(bubbles) == 1  # the stopped turn is gone
    assert text.strip() == engine.reply("hello", Sampling(max_tokens=256)).text


@pytest.mark.stretch
def test_the_memory_panel_teaches_answers_and_forgets(browser, tool_model, chat_tok, tmp_path):
    from selenium.webdriver.common.by import By

    from week12_nanochat.memory import Memory, MemoryConfig

    memory = Memory(tmp_path / "mem", tool_model, chat_tok,
                    MemoryConfig(encoder="hash", min_score=0.3, progress=False))
    started = []  # the consolidation job is memory.py's (tested there): here, that it starts
    memory.consolidate = lambda background=True: started.append(background)
    engine = ChatEngine(tool_model, chat_tok, tools={}, memory=memory)
    try:
        with running(create_app(engine, ServeConfig(), model_id="tiny")) as url:
            browser.get(url + "/")
            _wait(browser, lambda d: d.find_element(By.ID, "memory-on").is_displayed())
            browser.find_element(By.ID, "teach-text").send_keys("My dog is called Ravenlo.")
            browser.find_element(By.ID, "teach").click()
            _wait(browser, lambda d: "Ravenlo" in d.find_element(By.ID, "facts").text)
            assert "consolidation:" in browser.find_element(By.ID, "job").text
            assert started == [True] and [f.text for f in memory.facts()] == [
                "My dog is called Ravenlo."]
            _send(browser, "What is my dog called?")
            _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant.done"))
            meta = _bubbles(browser)[-1].find_element(By.CSS_SELECTOR, ".meta").text
            browser.save_screenshot(str(_artifact(tmp_path, "week12-page-memory.png")))
            browser.find_element(By.CSS_SELECTOR, "#facts .forget").click()
            _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#facts li"))
        assert "memory: retrieval" in meta and memory.facts() == []
    finally:
        memory.close()
