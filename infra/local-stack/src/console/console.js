// The local console. The customer side builds and signs real webhook deliveries (Meta, or
// Kapso v2) and reads the bot's messages from what the WhatsApp stand-in received; the
// business side uses the send API with a token the stack minted. Everything goes to the
// stack's real routes (this page's server forwards /webhooks/* and /v1/* to the functions).
"use strict";

const enc = new TextEncoder();
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const RANK = { sending: 0, sent: 1, delivered: 2, read: 3, failed: 4 };

let config = null;
let sequence = 0;
const phone = { messages: new Map(), order: [], cursor: 0 };
// `details` holds conversations as `GET /v1/conversations/{id}` (or a PATCH) answered: the
// list's items do not carry `botPaused` (the flag lives on the contact's thread).
const inbox = { conversations: new Map(), details: new Map(), since: null, selected: null, messages: [] };

function conversation(id) {
  const listed = inbox.conversations.get(id);
  const detail = inbox.details.get(id);
  if (!listed) return detail;
  return detail ? { ...listed, botPaused: detail.botPaused, status: detail.status === "ended" ? "ended" : listed.status } : listed;
}

function business() {
  return config.businesses.find((b) => b.phoneNumberId === $("business").value) || config.businesses[0];
}
function customer() {
  return $("customer-number").value.replace(/[^0-9]/g, "");
}

// ----- signing and delivering webhooks ------------------------------------------------------

async function hmacHex(secret, bytes) {
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const digest = await crypto.subtle.sign("HMAC", key, bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Posts one delivery, signed as Meta (X-Hub-Signature-256) or Kapso (X-Webhook-Signature).
async function deliver(kapsoEvent, body) {
  const bytes = enc.encode(JSON.stringify(body));
  const headers = { "content-type": "application/json" };
  let route = "/webhooks/whatsapp";
  if (kapsoEvent) {
    route = "/webhooks/kapso";
    headers["x-webhook-signature"] = await hmacHex(config.kapsoWebhookSecret, bytes);
    headers["x-webhook-event"] = kapsoEvent;
    headers["x-idempotency-key"] = crypto.randomUUID();
    headers["x-webhook-payload-version"] = "v2";
  } else {
    headers["x-hub-signature-256"] = "sha256=" + (await hmacHex(config.metaAppSecret, bytes));
  }
  const response = await fetch(route, { method: "POST", headers, body: bytes });
  if (!response.ok) {
    throw new Error(`${route} answered ${response.status}: ${await response.text()}`);
  }
}

function metaDelivery(biz, value) {
  value.messaging_product = "whatsapp";
  value.metadata = { display_phone_number: biz.displayPhoneNumber, phone_number_id: biz.phoneNumberId };
  return {
    object: "whatsapp_business_account",
    entry: [{ id: "102290129340398", changes: [{ field: "messages", value }] }],
  };
}

function kapsoBody(biz, who, message) {
  return {
    message,
    conversation: {
      id: `console-${biz.phoneNumberId}-${who}`,
      phone_number: "+" + who,
      status: "active",
      phone_number_id: biz.phoneNumberId,
      kapso: { contact_name: $("customer-name").value },
    },
    is_new_conversation: false,
    phone_number_id: biz.phoneNumberId,
  };
}

// The customer sends `content` (a WhatsApp message object without id/from/timestamp).
async function sendAsCustomer(content, shown) {
  const biz = business();
  const who = customer();
  if (!who) {
    $("phone-error").textContent = "Type a customer number (digits).";
    return;
  }
  const wamid = `wamid.CONSOLE${Date.now()}${++sequence}`;
  const timestamp = String(Math.floor(Date.now() / 1000));
  const message = { from: who, id: wamid, timestamp, ...content };
  addPhoneMessage({ wamid, from: "customer", who, pnid: biz.phoneNumberId, text: shown, status: "sending", at: Date.now() });
  try {
    if ($("kapso").checked) {
      const kapso = { direction: "inbound", status: "received", origin: "cloud_api", has_media: false, content: shown };
      await deliver("whatsapp.message.received", kapsoBody(biz, who, { ...message, kapso }));
    } else {
      const contacts = [{ profile: { name: $("customer-name").value }, wa_id: who }];
      await deliver(null, metaDelivery(biz, { contacts, messages: [message] }));
    }
    setStatus(wamid, "sent");
    $("phone-error").textContent = "";
  } catch (e) {
    setStatus(wamid, "failed");
    $("phone-error").textContent = e.message;
  }
}

// The phone reports a status of a message it received: delivered, then read.
async function postStatus(msg, status) {
  const biz = config.businesses.find((b) => b.phoneNumberId === msg.pnid) || business();
  const timestamp = String(Math.floor(Date.now() / 1000));
  const entry = { id: msg.wamid, status, timestamp, recipient_id: msg.who };
  if ($("kapso").checked) {
    const kapso = { direction: "outbound", status, origin: "cloud_api", has_media: false, statuses: [entry] };
    const message = { id: msg.wamid, timestamp, type: msg.kind || "text", kapso };
    await deliver(`whatsapp.message.${status}`, kapsoBody(biz, msg.who, message));
  } else {
    await deliver(null, metaDelivery(biz, { statuses: [entry] }));
  }
}

async function acknowledge(msg) {
  if (msg.acking) return;
  msg.acking = true;
  try {
    for (const status of ["delivered", "read"]) {
      if (RANK[msg.status] >= RANK[status]) continue;
      if (status === "read" && !$("auto-read").checked) break;
      await sleep(status === "delivered" ? 400 : 900);
      await postStatus(msg, status);
      setStatus(msg.wamid, status);
    }
  } catch (e) {
    $("phone-error").textContent = e.message;
  } finally {
    msg.acking = false;
  }
}

// ----- the customer's phone -----------------------------------------------------------------

function addPhoneMessage(msg) {
  if (phone.messages.has(msg.wamid)) return;
  phone.messages.set(msg.wamid, msg);
  phone.order.push(msg.wamid);
  renderPhone();
}

function setStatus(wamid, status) {
  const msg = phone.messages.get(wamid);
  if (msg && (RANK[status] > RANK[msg.status] || status === "failed")) {
    msg.status = status;
    renderPhone();
  }
}

// What a bubble shows for a message the business sent, as the Cloud API body has it.
function describe(body) {
  const type = body.type;
  if (type === "text") return { text: body.text?.body ?? "" };
  if (type === "interactive") {
    const i = body.interactive || {};
    const text = [i.header?.text, i.body?.text, i.footer?.text].filter(Boolean).join("\n");
    if (i.type === "button") {
      const choices = (i.action?.buttons || []).map((b) => ({ kind: "button_reply", id: b.reply?.id, title: b.reply?.title }));
      return { text, choices };
    }
    if (i.type === "list") {
      const choices = (i.action?.sections || []).flatMap((s) =>
        (s.rows || []).map((r) => ({ kind: "list_reply", id: r.id, title: r.title, description: r.description })));
      return { text, choices, listButton: i.action?.button };
    }
    return { text: text || `[interactive ${i.type}]` };
  }
  if (type === "template") return { text: `[template ${body.template?.name ?? ""}]` };
  if (type === "reaction") return { text: `reacted ${body.reaction?.emoji ?? ""}` };
  const media = body[type] || {};
  return { text: `[${type}] ${media.caption || media.link || media.id || ""}`.trim() };
}

async function pollWhatsApp() {
  const response = await fetch(`/whatsapp/requests?since=${phone.cursor}`);
  if (!response.ok) throw new Error(`the WhatsApp stand-in answered ${response.status}`);
  for (const record of await response.json()) {
    phone.cursor = Math.max(phone.cursor, record.seq);
    const body = record.body || {};
    const pnid = (record.path.match(/\/([^/]+)\/messages$/) || [])[1];
    if (body.status === "read" && body.message_id) {
      // The business marked the customer's message read.
      setStatus(body.message_id, "read");
      continue;
    }
    if (!record.wamid) continue;
    const who = String(body.to ?? body.recipient ?? "").replace(/^\+/, "");
    const msg = { wamid: record.wamid, from: "business", who, pnid, kind: body.type, status: "sent", at: Date.now(), ...describe(body) };
    addPhoneMessage(msg);
    acknowledge(msg);
  }
}

function ticks(status) {
  const span = document.createElement("span");
  span.className = `ticks status-${status}`;
  span.textContent = { sending: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" }[status] || "";
  span.title = status;
  return span;
}

function clock(at) {
  return new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Re-renders a pane only when what it shows changed, so clicks never land on a replaced node.
const shown = new Map();
function changed(pane, data) {
  const key = JSON.stringify(data);
  if (shown.get(pane) === key) return false;
  shown.set(pane, key);
  return true;
}

function renderPhone() {
  const chat = $("phone-chat");
  const biz = business();
  const who = customer();
  const visible = phone.order.map((w) => phone.messages.get(w)).filter((m) => m.who === who && m.pnid === biz.phoneNumberId);
  if (!changed("phone", visible.map((m) => [m.wamid, m.status, Boolean(m.answered)]))) return;
  const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  chat.replaceChildren();
  for (const msg of visible) {
    const bubble = document.createElement("div");
    bubble.className = `bubble ${msg.from}`;
    bubble.dataset.from = msg.from;
    bubble.dataset.wamid = msg.wamid;
    bubble.dataset.status = msg.status;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = msg.text;
    bubble.append(text);
    if (msg.choices?.length) {
      const choices = document.createElement("div");
      choices.className = "choices";
      if (msg.listButton) {
        const label = document.createElement("small");
        label.textContent = `☰ ${msg.listButton}`;
        choices.append(label);
      }
      for (const choice of msg.choices) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "choice";
        button.dataset.id = choice.id;
        button.textContent = choice.title;
        if (choice.description) {
          const small = document.createElement("small");
          small.textContent = choice.description;
          button.append(small);
        }
        button.disabled = Boolean(msg.answered);
        button.addEventListener("click", () => {
          msg.answered = true;
          const reply = { id: choice.id, title: choice.title };
          if (choice.description) reply.description = choice.description;
          sendAsCustomer({
            type: "interactive",
            context: { from: biz.displayPhoneNumber, id: msg.wamid },
            interactive: { type: choice.kind, [choice.kind]: reply },
          }, choice.title);
        });
        choices.append(button);
      }
      bubble.append(choices);
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = clock(msg.at);
    meta.append(ticks(msg.status));
    bubble.append(meta);
    chat.append(bubble);
  }
  if (atBottom) chat.scrollTop = chat.scrollHeight;
}

// ----- the business inbox -------------------------------------------------------------------

async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(options.headers || {}), authorization: `Bearer ${business().token}` };
    if (options.body) headers["content-type"] = "application/json";
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401 && attempt === 0) {
      await loadConfig(); // the token expired: the stack mints another
      continue;
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!response.ok) {
      throw new Error(`${options.method || "GET"} ${path.split("?")[0]}: ${response.status} ${body?.error?.message || text}`);
    }
    return body;
  }
}

async function pollConversations() {
  let query = "limit=100";
  if (inbox.since) query += `&updatedSince=${encodeURIComponent(inbox.since)}`;
  const page = await api(`/v1/conversations?${query}`);
  let latest = inbox.since ? Date.parse(inbox.since) + 5000 : 0;
  for (const c of page.items) {
    inbox.conversations.set(c.id, c);
    latest = Math.max(latest, Date.parse(c.updatedAt));
  }
  // Activity is strictly after `updatedSince`; ask again with a margin and merge.
  if (latest) inbox.since = new Date(latest - 5000).toISOString();
  if (!inbox.selected) {
    const mine = [...inbox.conversations.values()].find((c) => c.contactId === customer() && c.status === "active");
    if (mine) inbox.selected = mine.id;
  }
  renderConversations();
}

async function pollThread() {
  if (!inbox.selected) return;
  const id = inbox.selected;
  const detail = await api(`/v1/conversations/${encodeURIComponent(id)}`);
  inbox.details.set(id, detail);
  const items = [];
  let cursor = null;
  do {
    const page = await api(`/v1/conversations/${encodeURIComponent(id)}/messages?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  if (inbox.selected === id) {
    inbox.messages = items;
    renderConversations();
    renderThread();
  }
}

function renderConversations() {
  const list = $("conversations");
  const sorted = [...inbox.conversations.keys()].map(conversation).sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt));
  renderThreadHead();
  if (!changed("conversations", [inbox.selected, sorted])) return;
  list.replaceChildren();
  for (const c of sorted) {
    const item = document.createElement("li");
    item.className = "conversation" + (c.id === inbox.selected ? " selected" : "");
    item.dataset.id = c.id;
    item.dataset.contact = c.contactId;
    item.dataset.paused = String(c.botPaused);
    item.textContent = "+" + c.contactId;
    if (c.botPaused) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "bot paused";
      item.append(badge);
    }
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = `${c.status} · ${new Date(c.updatedAt).toLocaleString()}`;
    item.append(when);
    item.addEventListener("click", () => {
      inbox.selected = c.id;
      inbox.messages = [];
      renderConversations();
      renderThread();
      pollThread().catch(showInboxError);
    });
    list.append(item);
  }
}

function renderThreadHead() {
  const c = conversation(inbox.selected);
  $("thread-title").textContent = c ? `+${c.contactId} · ${c.status}` : "Pick a conversation";
  const toggle = $("pause-toggle");
  toggle.disabled = !c || c.status !== "active";
  toggle.textContent = c?.botPaused ? "Resume bot" : "Pause bot";
  toggle.dataset.paused = String(Boolean(c?.botPaused));
  $("inbox-input").disabled = !c;
  $("inbox-send").disabled = !c;
}

function aiLine(ai) {
  const tokens = ai.totalTokens != null
    ? `${ai.totalTokens} tokens (${ai.promptTokens ?? "?"} in, ${ai.completionTokens ?? "?"} out)`
    : "tokens not reported";
  const failover = ai.failoverFrom ? ` · after ${ai.failoverFrom} failed` : "";
  return `AI: ${ai.provider} · ${ai.model} · ${ai.latencyMs} ms · ${tokens}${failover}`;
}

function renderThread() {
  const pane = $("thread-messages");
  if (!changed("thread", inbox.messages)) return;
  const atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
  pane.replaceChildren();
  for (const m of inbox.messages) {
    const div = document.createElement("div");
    div.className = `msg ${m.direction}`;
    div.dataset.wamid = m.id;
    div.dataset.direction = m.direction;
    div.dataset.type = m.type;
    div.dataset.status = m.status || "";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text ?? `[${m.type}]`;
    div.append(text);
    if (m.ai) {
      const ai = document.createElement("span");
      ai.className = "ai";
      ai.textContent = aiLine(m.ai);
      div.append(ai);
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    const who = m.direction === "inbound" ? "customer" : m.ai ? "AI" : (m.origin || "business");
    meta.textContent = `${who} · ${new Date(m.timestamp).toLocaleTimeString()}${m.status ? ` · ${m.status}` : ""}`;
    if (m.error) meta.textContent += ` · ${m.error.title || m.error.code}`;
    div.append(meta);
    pane.append(div);
  }
  if (atBottom) pane.scrollTop = pane.scrollHeight;
}

function showInboxError(e) {
  $("inbox-error").textContent = e.message;
}

async function togglePause() {
  const c = conversation(inbox.selected);
  if (!c) return;
  try {
    const updated = await api(`/v1/conversations/${encodeURIComponent(c.id)}`, {
      method: "PATCH",
      body: JSON.stringify({ botPaused: !c.botPaused }),
    });
    inbox.details.set(updated.id, updated);
    $("inbox-error").textContent = "";
    renderConversations();
  } catch (e) {
    showInboxError(e);
  }
}

async function sendAsBusiness(event) {
  event.preventDefault();
  const c = conversation(inbox.selected);
  const body = $("inbox-input").value.trim();
  if (!c || !body) return;
  try {
    await api("/v1/messages", {
      method: "POST",
      headers: { "idempotency-key": crypto.randomUUID() },
      body: JSON.stringify({ contactId: c.contactId, phoneNumberId: c.phoneNumberId, message: { type: "text", body } }),
    });
    $("inbox-input").value = "";
    $("inbox-error").textContent = "";
    await pollThread();
  } catch (e) {
    showInboxError(e);
  }
}

// ----- start --------------------------------------------------------------------------------

async function loadConfig() {
  const response = await fetch("/console/config");
  if (!response.ok) throw new Error(`the console's config answered ${response.status}`);
  const fresh = await response.json();
  const first = !config;
  config = fresh;
  if (first) {
    const select = $("business");
    for (const b of config.businesses) {
      const option = document.createElement("option");
      option.value = b.phoneNumberId;
      option.textContent = `${b.name} (${b.phoneNumberId})`;
      select.append(option);
    }
    $("customer-number").value = config.customer;
    $("customer-name").value = config.customerName;
  }
}

async function tick() {
  try {
    await pollWhatsApp();
    await pollConversations();
    await pollThread();
    $("stack-state").textContent = "stack: up";
  } catch (e) {
    $("stack-state").textContent = `stack: ${e.message}`;
  }
}

async function main() {
  await loadConfig();
  $("phone-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("phone-input").value.trim();
    if (!text) return;
    $("phone-input").value = "";
    sendAsCustomer({ type: "text", text: { body: text } }, text);
  });
  $("inbox-form").addEventListener("submit", sendAsBusiness);
  $("pause-toggle").addEventListener("click", togglePause);
  $("auto-read").addEventListener("change", () => {
    for (const msg of phone.messages.values()) if (msg.from === "business") acknowledge(msg);
  });
  for (const id of ["customer-number", "business"]) {
    $(id).addEventListener("change", () => {
      if (id === "business") {
        inbox.conversations.clear();
        inbox.details.clear();
        inbox.since = null;
      }
      inbox.selected = null;
      inbox.messages = [];
      renderPhone();
      renderConversations();
      renderThread();
    });
  }
  renderPhone();
  for (;;) {
    await tick();
    await sleep(1000);
  }
}

main().catch((e) => { $("stack-state").textContent = `console failed: ${e.message}`; });
