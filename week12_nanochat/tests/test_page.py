"""The page and the command, without a browser: the page and its assets are served and fetch
nothing from elsewhere; the page's endpoints answer what it asks; ``python -m
week12_nanochat.serve`` serves a saved model, and without one says what to run (exit 2)."""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from week12_nanochat.serve import STATIC, ServeConfig, create_app, main, running

IDS = ("log", "input", "send", "stop", "temperature", "tools", "teach-text", "teach", "facts",
       "job")


@pytest.mark.core
def test_the_page_and_its_assets_are_served_and_self_contained(engine):
    with running(create_app(engine, ServeConfig(), model_id="m")) as url:
        page = httpx.get(url + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for i in IDS:
            assert f'id="{i}"' in page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(assets) == ["/static/app.js", "/static/style.css"]
        for a in assets:
            r = httpx.get(url + a)
            assert r.status_code == 200 and r.text == (STATIC / Path(a).name).read_text()
        info = httpx.get(url + "/api/info").json()
        assert info["model"] == "m" and info["tools"] == ["calculator"]
        assert info["memory"] is False and info["block_size"] == engine.block_size
    for f in STATIC.iterdir():  # nothing from a CDN or any other host: the page works offline
        assert not re.search(r"https?://|//cdn", f.read_text()), f.name
    js = (STATIC / "app.js").read_text()
    for route in ("/v1/chat/completions", "/v1/memory", "/api/info"):
        assert route in js


@pytest.mark.core
def test_the_command_without_a_model_says_what_to_run(capsys):
    assert main(["--no-memory"]) == 2
    err = capsys.readouterr().err
    assert "no finished speedrun" in err and "make speedrun" in err and "--model" in err
    assert main(["--batch-size", "0", "--no-memory"]) == 2
    assert "batch_size must be an int >= 1" in capsys.readouterr().err


@pytest.mark.core
def test_a_memory_folder_that_is_not_a_memorys_is_refused(tmp_path, tool_model, chat_tok,
                                                         capsys):
    from week09_alignment.common import save_stage

    save_stage(tmp_path / "sft", tool_model, chat_tok)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a memory")
    assert main(["--model", str(tmp_path / "sft"), "--memory", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err
    assert "the memory in" in err and "did not open" in err and "--no-memory" in err


@pytest.mark.stretch
def test_the_command_serves_a_saved_model(tmp_path, tool_model, chat_tok):
    from week09_alignment.common import save_stage
    from week12_nanochat.engine import ChatEngine, Sampling, default_tools

    engine = ChatEngine(tool_model, chat_tok, tools=default_tools(repl=False))  # the server's

    save_stage(tmp_path / "sft", tool_model, chat_tok)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "week12_nanochat.serve", "--model",
                             str(tmp_path / "sft"), "--port", str(port), "--no-memory",
                             "--no-repl"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                models = httpx.get(url + "/v1/models").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start in 90 s"
                time.sleep(0.2)
        assert [m["id"] for m in models["data"]] == ["sft"]
        got = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "What is 12 + 30?"}], "temperature": 0,
            "max_tokens": 40}).json()
        ref = engine.reply("What is 12 + 30?", Sampling(max_tokens=40))
        assert got["choices"][0]["message"]["content"] == ref.text
        assert got["usage"]["completion_tokens"] == ref.completion_tokens
    finally:
        proc.terminate()
        proc.wait(30)
