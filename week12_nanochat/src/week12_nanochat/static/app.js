// nanochat's page: a chat streamed over SSE from /v1/chat/completions (fetch + ReadableStream),
// tool calls and outputs in their own boxes, edit-and-regenerate, stop, and the memory panel.
// Plain JS, no framework, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, messages: [], nodes: [], controller: null, editIndex: null };

// ------------------------------------------------------------------ the chat

function addUser(text, index) {
  const div = document.createElement("div");
  div.className = "msg user";
  div.textContent = text;
  const actions = document.createElement("div");
  actions.className = "actions";
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit";
  edit.textContent = "edit";
  edit.onclick = () => startEdit(index);
  actions.appendChild(edit);
  div.appendChild(actions);
  $("log").appendChild(div);
  return div;
}

function addAssistant() {
  const div = document.createElement("div");
  div.className = "msg assistant streaming";
  $("log").appendChild(div);
  return div;
}

function startEdit(index) {
  if (state.controller) return;
  state.editIndex = index;
  $("input").value = state.messages[index].content;
  $("editing").hidden = false;
  $("input").focus();
}

function cancelEdit() {
  state.editIndex = null;
  $("editing").hidden = true;
}

function truncate(index) {  // drop message `index` and everything after it
  for (const node of state.nodes.slice(index)) node.remove();
  state.messages = state.messages.slice(0, index);
  state.nodes = state.nodes.slice(0, index);
}

function segment(bubble, kind) {  // the bubble's last segment if of `kind`, else a new one
  const last = bubble.lastElementChild;
  if (last && last.classList.contains("seg") && last.dataset.kind === kind) return last;
  const seg = document.createElement("span");
  seg.className = "seg " + kind;
  seg.dataset.kind = kind;
  bubble.appendChild(seg);
  return seg;
}

function describe(info, finish) {
  const parts = [];
  if (info && info.memory) parts.push("memory: " + info.memory);
  if (info && info.adapter) parts.push("adapter: " + JSON.stringify(info.adapter));
  if (parts.length === 0) parts.push("answered by the base model");
  if (info && info.dropped_messages) parts.push(info.dropped_messages + " old messages slid out");
  if (finish === "length") parts.push("cut at the token limit");
  return parts.join(" · ");
}

async function send(text) {
  if (state.editIndex !== null) {
    truncate(state.editIndex);
    cancelEdit();
  }
  state.messages.push({ role: "user", content: text });
  state.nodes.push(addUser(text, state.messages.length - 1));
  await generate();
}

async function generate() {
  const bubble = addAssistant();
  const controller = new AbortController();
  state.controller = controller;
  $("stop").disabled = false;
  $("send").disabled = true;
  let answer = "";  // the words after the last tool output: the turn kept in the history
  let finish = null, info = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      signal: controller.signal,
      body: JSON.stringify({
        model: state.model, messages: state.messages, stream: true,
        temperature: parseFloat($("temperature").value), max_tokens: 256,
        nanochat_tools: $("tools").checked,
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || res.statusText);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          for (const choice of chunk.choices) {
            const delta = choice.delta || {};
            if (delta.content) {
              segment(bubble, "text").textContent += delta.content;
              answer += delta.content;
            }
            const call = delta.nanochat_tool_call;
            if (call) {
              segment(bubble, call.type).textContent += call.text;
              if (call.type === "output") answer = "";
            }
            if (choice.finish_reason) {
              finish = choice.finish_reason;
              info = choice.nanochat;
            }
          }
        }
      }
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = describe(info, finish);
    bubble.appendChild(meta);
  } catch (err) {
    const note = document.createElement("div");
    note.className = err.name === "AbortError" ? "meta stopped" : "meta error";
    note.textContent = err.name === "AbortError" ? "stopped" : "error: " + err.message;
    bubble.appendChild(note);
  } finally {
    bubble.classList.remove("streaming");
    bubble.classList.add("done");
    state.controller = null;
    $("stop").disabled = true;
    $("send").disabled = false;
  }
  state.messages.push({ role: "assistant", content: answer.trim() });
  state.nodes.push(bubble);
}

// ------------------------------------------------------------------ the memory

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
  return data;
}

function showJob(job) {
  if (!job) return;
  const steps = job.steps || 0;
  $("job").textContent = "consolidation: " + job.state +
    (steps ? " (" + job.step + "/" + steps + (job.topic ? ", " + job.topic : "") + ")" : "") +
    (job.error ? " — " + job.error : "");
  $("job-progress").max = steps || 1;
  $("job-progress").value = steps ? job.step : (job.state === "done" ? 1 : 0);
}

function showFacts(facts) {
  const list = $("facts");
  list.textContent = "";
  for (const fact of facts) {
    const li = document.createElement("li");
    li.textContent = fact.text + " ";
    const small = document.createElement("span");
    small.className = "muted";
    small.textContent = "(" + fact.topic + ") ";
    const forget = document.createElement("button");
    forget.type = "button";
    forget.className = "forget";
    forget.textContent = "forget";
    forget.onclick = async () => {
      await api("DELETE", "/v1/memory/" + encodeURIComponent(fact.id));
      await refreshMemory();
    };
    li.append(small, forget);
    list.appendChild(li);
  }
}

async function refreshMemory() {
  try {
    const data = await api("GET", "/v1/memory");
    showFacts(data.facts);
    showJob(data.job);
  } catch (err) {
    $("job").textContent = "memory: " + err.message;
  }
}

async function teach() {
  const text = $("teach-text").value.trim();
  if (!text) return;
  const topic = $("teach-topic").value.trim() || undefined;
  try {
    const data = await api("POST", "/v1/memory", { text, topic });
    showJob(data.job);
    $("teach-text").value = "";
  } catch (err) {
    $("job").textContent = "teach failed: " + err.message;
  }
  await refreshMemory();
}

// ------------------------------------------------------------------ wiring

async function init() {
  const info = await api("GET", "/api/info");
  state.model = info.model;
  $("model").textContent = info.model + " · tools: " + (info.tools.join(", ") || "none");
  if (info.memory) {
    $("memory-on").hidden = false;
    await refreshMemory();
    setInterval(refreshMemory, 2000);
  } else {
    $("memory-off").hidden = false;
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || state.controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").onclick = () => state.controller && state.controller.abort();
$("cancel-edit").onclick = cancelEdit;
$("clear").onclick = () => { if (!state.controller) truncate(0); };
$("temperature").oninput = () => { $("temperature-value").textContent = $("temperature").value; };
$("teach").onclick = teach;
init();
