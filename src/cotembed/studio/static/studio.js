// cotembed studio: sends each edit to the server and swaps in the fragments it renders.
// Plain ES module, no dependencies, no network beyond the studio's own origin.

const tab = sessionStorage.getItem("cotembed-studio-tab") ||
  (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + String(Date.now()));
sessionStorage.setItem("cotembed-studio-tab", tab);

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const timers = new Map();
const shown = new Map();  // fragment name -> the HTML last swapped in
let chain = Promise.resolve();
let editorStale = false;
window.studio = { tab, lastRoundTripMs: null, updates: 0, busy: 0, holder: null };

function notice(text, kind = "") {
  const box = $("#notice");
  box.textContent = text;
  box.className = "notice " + kind;
  box.hidden = !text;
}

async function call(method, path, body) {
  const options = { method, headers: { "Accept": "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify({ tab, ...body });
  }
  const response = await fetch(path, options);
  let payload = {};
  try { payload = await response.json(); } catch (error) { payload = { error: { message: `HTTP ${response.status}` } }; }
  return { status: response.status, payload };
}

// One request at a time, in the order the person made them.
function send(method, path, body, { keepEditor = false, forceEditor = false } = {}) {
  const started = performance.now();
  window.studio.busy += 1;
  chain = chain.then(async () => {
    try {
      const queued = performance.now();
      const { status, payload } = await call(method, path, body);
      const answered = performance.now();
      if (status >= 400) {
        const message = (payload.error && payload.error.message) || `HTTP ${status}`;
        notice(message, "bad");
        if (payload.error && payload.error.type === "other_tab") showTakeOver(message);
        return payload;
      }
      if (payload.confirm) {  // the server asks before it replaces a file; "Replace" sends the same request confirmed
        const box = $("#confirm");
        $("#confirm-text").textContent = payload.confirm;
        box.dataset.path = path;
        box.dataset.body = JSON.stringify({ ...(body || {}), confirm: true });
        box.hidden = false;
        return payload;
      }
      apply(payload, { keepEditor, forceEditor });
      const applied = performance.now();
      window.studio.lastRoundTripMs = applied - started;
      window.studio.lastTiming = { queued: queued - started, answer: answered - queued, swap: applied - answered };
      window.studio.updates += 1;
      return payload;
    } catch (error) {
      notice(`the studio server did not answer: ${error}`, "bad");
      return null;
    } finally {
      window.studio.busy -= 1;
    }
  });
  return chain;
}

function apply(payload, { keepEditor = false, forceEditor = false } = {}) {
  const fragments = payload.fragments || {};
  if (keepEditor && payload.ok && !("editor" in fragments)) editorStale = true;  // option texts in the rules table
  for (const [name, html] of Object.entries(fragments)) {
    if (name === "yaml") {
      const area = $("#yaml");
      if (document.activeElement !== area) area.value = html;
      continue;
    }
    if (name === "editor" && !forceEditor && (keepEditor || $("#editor").contains(document.activeElement))) {
      editorStale = true;
      continue;
    }
    const target = document.getElementById(name);
    if (target && shown.get(name) !== html) target.innerHTML = html;  // an unchanged fragment costs no layout
    shown.set(name, html);
    if (name === "editor") editorStale = false;
  }
  if (payload.field) showProblems(payload.field, payload.ok ? [] : payload.problems || []);
  if (payload.ok && payload.field !== "yaml") showProblems("yaml", []);
  if (payload.message) notice(payload.message, payload.ok === false ? "bad" : "good");
  else if (payload.ok !== false) notice("");
  syncHistory();
}

function showProblems(field, problems) {
  for (const list of $$("[data-problems-for]")) {
    if (list.dataset.problemsFor !== field) continue;
    list.replaceChildren(...problems.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    const input = field === "yaml" ? $("#yaml") : list.parentElement.querySelector("input, textarea");
    if (input) input.classList.toggle("invalid", problems.length > 0);
  }
}

function syncHistory() {
  const history = $("#history");
  if (!history) return;
  $("#undo").disabled = history.dataset.undo !== "1";
  $("#redo").disabled = history.dataset.redo !== "1";
}

function showTakeOver(message) {
  const box = $("#notice");
  notice(message, "");
  const button = Object.assign(document.createElement("button"), { type: "button", textContent: "Take over editing here" });
  button.id = "take-over";
  button.addEventListener("click", () => claim(true));
  box.append(" ", button);
}

async function claim(takeOver = false) {
  const { status, payload } = await call("POST", "api/claim", { take_over: takeOver });
  if (status >= 400) return;
  window.studio.holder = payload.holder;
  if (payload.holder) {
    if ($("#take-over")) notice("");
  } else {
    showTakeOver(payload.message);
  }
}

function editOf(input) {
  const data = input.dataset;
  const op = { op: data.op, group: data.group, text: input.value };
  if (data.index !== undefined) op.index = Number(data.index);
  if (data.class !== undefined) op.class = data.class;
  return op;
}

function fieldOf(op) {
  if (op.op === "option") return `option:${op.group}:${op.index}`;
  if (op.op === "rule") return `rule:${op.class}:${op.group}`;
  return `${op.op}:${op.group}`;
}

function schedule(key, delay, action) {
  clearTimeout(timers.get(key));
  timers.set(key, setTimeout(() => { timers.delete(key); action(); }, delay));
}

function sendEdit(input) {
  const op = editOf(input);
  const key = fieldOf(op);
  if (input.dataset.sent === input.value) return;
  input.dataset.sent = input.value;
  clearTimeout(timers.get(key));
  send("POST", "api/edit", op, { keepEditor: true });
}

document.addEventListener("input", (event) => {
  const input = event.target;
  if (input.matches("#editor input[data-op]")) {
    schedule(fieldOf(editOf(input)), 350, () => sendEdit(input));
  } else if (input.id === "yaml") {
    schedule("yaml", 500, () => send("POST", "api/yaml", { text: input.value }, { keepEditor: false }));
  } else if (input.matches("[data-check-all]")) {
    for (const box of $$("input[name=change]")) box.checked = input.checked;
    schedule("preview", 150, preview);
  } else if (input.matches("input[name=change]")) {
    const all = $("[data-check-all]");
    if (all) all.checked = $$("input[name=change]").every((box) => box.checked);
    schedule("preview", 150, preview);
  }
});

// The measured effect of the checked changes alone, while the person chooses.
async function preview() {
  const form = $("#proposal-form");
  const line = $("#proposal-preview");
  if (!form || !line) return;
  const accepted = $$("input[name=change]", form).filter((box) => box.checked).map((box) => Number(box.value));
  const { status, payload } = await call("POST", "api/proposal/preview", { id: form.dataset.id, accepted });
  if (status >= 400) { line.textContent = (payload.error && payload.error.message) || `HTTP ${status}`; return; }
  if (!payload.ok) { line.textContent = `the checked changes alone do not make a valid system: ${payload.problems.join("; ")}`; return; }
  if (!payload.after) { line.textContent = ""; return; }
  line.textContent = `the ${accepted.length} checked change(s) alone: ${payload.line}`;
  line.dataset.after = JSON.stringify(payload.after);
}

document.addEventListener("change", (event) => {
  if (event.target.matches("#editor input[data-op]")) sendEdit(event.target);
});

document.addEventListener("keydown", (event) => {
  const input = event.target;
  if (event.key === "Enter" && input.matches("[data-add-option]") && input.value.trim()) {
    event.preventDefault();
    send("POST", "api/edit", { op: "add_option", group: input.dataset.group, text: input.value }, { forceEditor: true });
  } else if (event.key === "Enter" && input.id === "save-as-path") {
    event.preventDefault();
    actions["save-as-go"]();
  } else if (event.key === "Enter" && input.matches("#editor input[data-op]")) {
    event.preventDefault();
    sendEdit(input);
  }
});

document.addEventListener("focusout", (event) => {
  if (!editorStale || !$("#editor").contains(event.target)) return;
  if (event.relatedTarget && $("#editor").contains(event.relatedTarget)) return;
  send("GET", "api/state");
});

// A running optimisation: its progress line is refreshed until it ends, then the page (with its proposal).
let watching = false;
async function watchOptimize() {
  if (watching) return;
  watching = true;
  try {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 700));
      const { status, payload } = await call("GET", "api/optimize");
      const run = status < 400 ? payload.optimization : null;
      const line = $("#optimize-progress");
      if (!run || !run.running) break;
      if (line) {
        const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
        line.firstElementChild.nextSibling.textContent =
          ` ${run.status}: ${run.candidates} of ${run.budget} candidates, ${run.rounds} rounds; held-out accuracy ${pct(run.start_val)} → best ${pct(run.best_val)} `;
      }
    }
  } finally {
    watching = false;
  }
  send("GET", "api/state");
}

async function openCell(button) {
  const params = new URLSearchParams({ true: button.dataset.true, predicted: button.dataset.pred });
  const { status, payload } = await call("GET", `api/cell?${params}`);
  const section = $("#cell");
  if (status >= 400) { notice(payload.error ? payload.error.message : `HTTP ${status}`, "bad"); return; }
  section.innerHTML = payload.html;
  section.hidden = false;
  section.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

const actions = {
  "undo": () => send("POST", "api/undo", {}, { forceEditor: true }),
  "redo": () => send("POST", "api/redo", {}, { forceEditor: true }),
  "induce": () => { notice("inducing rules from the labelled examples…"); return send("POST", "api/propose/induce", {}); },
  "save": () => send("POST", "api/save", { confirm: false }),
  "save-confirmed": () => {
    const box = $("#confirm");
    box.hidden = true;
    return send("POST", box.dataset.path || "api/save", box.dataset.body ? JSON.parse(box.dataset.body) : { confirm: true });
  },
  "save-cancel": () => { $("#confirm").hidden = true; },
  "save-as": () => { $("#save-as-box").hidden = false; $("#save-as-path").focus(); },
  "save-as-go": () => {
    const path = $("#save-as-path").value.trim();
    if (!path) { notice("name the file to save as", "bad"); return null; }
    $("#save-as-box").hidden = true;
    return send("POST", "api/save_as", { path, confirm: false });
  },
  "save-as-cancel": () => { $("#save-as-box").hidden = true; },
  "llm": () => {
    notice("asking the LLM for a revision… (it sees the confusions, the weakest questions and your notes)");
    const notes = $("#llm-notes");
    return send("POST", "api/propose/llm", { notes: notes ? notes.value : "" });
  },
  "accept": () => {
    const form = $("#proposal-form");
    const accepted = $$("input[name=change]", form).filter((box) => box.checked).map((box) => Number(box.value));
    return send("POST", "api/proposal/accept", { id: form.dataset.id, accepted }, { forceEditor: true });
  },
  "reject": () => send("POST", "api/proposal/reject", {}),
  "optimize": () => send("POST", "api/propose/optimize", {}).then(watchOptimize),
  "stop-optimize": () => call("POST", "api/optimize/stop", {}),
  "remove-option": (button) => send("POST", "api/edit", { op: "remove_option", group: button.dataset.group, index: Number(button.dataset.index) }, { forceEditor: true }),
  "close-cell": () => { $("#cell").hidden = true; },
};

document.addEventListener("click", (event) => {
  const cell = event.target.closest(".cellbtn");
  if (cell) { openCell(cell); return; }
  const button = event.target.closest("[data-action]");
  if (button && actions[button.dataset.action]) actions[button.dataset.action](button);
});

syncHistory();
claim();
if ($("#optimize-progress") && $("#optimize-progress").dataset.running === "1") watchOptimize();
setInterval(() => claim(false), 10000);
