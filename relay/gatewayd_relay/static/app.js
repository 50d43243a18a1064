// The relay's pages: one small script, no framework, no external resource.
// Text from the server is always set as textContent (never parsed as HTML).
"use strict";

const T = JSON.parse(document.getElementById("i18n").textContent);
const CSRF = document.querySelector("meta[name=csrf]").content;
const LANG = document.querySelector("meta[name=lang]").content;
const LOCALE = LANG === "en" ? "en-GB" : "zh-CN";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_e) { data = null; }
  return { status: r.status, ok: r.ok, data };
}

const typeName = (type) => T[`type_${type}`] || type;
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString(LOCALE, { hour12: false }) : "");

// ---- login, invite -------------------------------------------------------------------

function loginPage() {
  const form = document.getElementById("login");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const r = await api("POST", "/api/login", { username: f.get("username"), password: f.get("password") });
    if (r.ok) location.href = "/";
    else document.getElementById("login-error").textContent = (r.data && r.data.message) || r.status;
  });
}

function invitePage() {
  const b = document.getElementById("bind");
  if (!b) return;
  b.addEventListener("click", async () => {
    b.disabled = true;
    const r = await api("POST", `/api/invites/${encodeURIComponent(b.dataset.token)}/accept`);
    if (r.ok) location.href = "/phone";
    else { document.getElementById("bind-error").textContent = (r.data && r.data.message) || r.status; b.disabled = false; }
  });
}

// ---- the phone -----------------------------------------------------------------------

// A list that could not be loaded (the network, the relay busy or restarting) is said so
// and tried again: it is not "no doors" to someone standing at the door.
const LOAD_AGAIN_MS = 3000;

async function phonePage() {
  const box = document.getElementById("doors");
  const result = document.getElementById("result");
  let r;
  try { r = await api("GET", "/api/phone/doors"); } catch (_e) { r = { ok: false, status: 0 }; }
  if (!r.ok && (r.status === 0 || r.status >= 500)) {
    box.replaceChildren(el("p", { class: "err load-failed" }, T.load_failed));
    setTimeout(phonePage, LOAD_AGAIN_MS);
    return;
  }
  box.replaceChildren();
  if (!r.ok || r.data.length === 0) { box.append(el("p", { class: "empty" }, T.no_doors)); return; }
  for (const d of r.data) {
    const sub = [];
    if (d.valid_until) sub.push(`${T.until} ${when(d.valid_until)}`);
    if (d.hours) sub.push(d.hours);
    if (d.opens_left !== null) sub.push(`${T.opens_left} ${d.opens_left}`);
    const btn = el("button", { class: "open big", "data-door": d.id }, el("span", {}, T.open), el("small", {}, d.name));
    btn.addEventListener("click", async () => {
      const pending = api("POST", `/api/phone/doors/${d.id}/open`);  // first: someone is at the door
      btn.disabled = true;
      result.className = "result";
      result.textContent = T.opening;
      const o = await pending;
      const data = o.data || {};
      result.textContent = data.message || String(o.status);
      result.className = "result " + (data.ok ? "ok" : "err");
      result.dataset.code = data.code || String(o.status);
      btn.disabled = false;
    });
    box.append(el("div", { class: "door" }, btn, el("p", { class: "sub" }, sub.join(" · "))));
  }
}

// ---- landlord and grid worker --------------------------------------------------------

const FIRE = new Set(["smoke.alarm", "smoke.heat_alarm", "gateway.fire_mode"]);

function incidentRow(i) {
  const state = i.closed_at ? T.closed : i.state === "active" ? T.active : T.cleared;
  const acts = el("div", { class: "acts" });
  if (!i.closed_at) {
    if (!i.acked_at) acts.append(el("button", { class: "ack primary", onclick: () => act(i, "ack") }, T.ack));
    if (FIRE.has(i.type)) acts.append(el("button", { class: "fire", onclick: () => act(i, "fire_confirm") }, T.fire_confirm));
    const note = el("input", { class: "note", placeholder: T.close_note, "aria-label": T.close_note });
    // Read the note at click time: a live update may have moved the typed-in field here.
    const closeIt = (ev) => act(i, "close", { note: ev.target.closest("article").querySelector("input.note").value });
    acts.append(note, el("button", { class: "close", onclick: closeIt }, T.close));
  }
  const facts = [`${i.house_name}`, i.device, when(i.since), state];
  if (i.acked_at) facts.push(`${T.acked}: ${i.acked_by} ${when(i.acked_at)}`);
  if (i.level > 0) facts.push(`${T.escalated} ×${i.level}`);
  if (i.closed_at) facts.push(`${i.closed_by}: ${i.close_note}`);
  return el("article", {
    class: `incident sev-${i.severity} ${i.closed_at ? "closed" : ""} ${i.acked_at ? "acked" : ""}`,
    id: `incident-${i.id}`, "data-incident": i.id, "data-type": i.type, "data-level": i.level,
    "data-acked-by": i.acked_by || "",
  }, el("h3", {}, typeName(i.type)), el("p", { class: "facts" }, facts.join(" · ")), acts);
}

async function act(i, what, body) {
  const r = await api("POST", `/api/alarms/${i.id}/${what}`, body || {});
  if (r.ok) upsertIncident(r.data.incident);
}

function upsertIncident(i) {
  const box = document.getElementById("alarms");
  box.querySelector(".empty")?.remove();
  const row = incidentRow(i);
  const old = document.getElementById(`incident-${i.id}`);
  if (!old) { box.prepend(row); return; }
  // A live update must not eat the note someone is typing.
  const typing = old.querySelector("input.note");
  const fresh = row.querySelector("input.note");
  if (typing && fresh) fresh.replaceWith(typing);
  old.replaceWith(row);
}

function doorRow(d) {
  const lock = d.lock ? (T[d.lock] || d.lock) : "?";
  return el("li", { id: `door-${d.id}`, "data-lock": d.lock || "" }, `${d.name} — ${lock}`);
}

function accessRow(a) {
  const how = a.type === "relay.refused" ? `${T.refused} (${T[a.detail.reason] || a.detail.reason})` : (T[`method_${a.method}`] || a.method);
  const who = a.name ? `${a.name} (${a.user})` : a.user;
  return el("tr", { "data-access": a.id, "data-type": a.type, "data-user": a.user },
    el("td", {}, when(a.ts)), el("td", {}, a.device), el("td", {}, typeName(a.type)), el("td", {}, who), el("td", {}, how));
}

function personRow(p, manage, doors) {
  const grants = p.grants.filter((g) => !g.revoked).map((g) => {
    const bits = [doors[g.door] || g.door];
    if (g.valid_until) bits.push(`${T.until} ${when(g.valid_until)}`);
    if (g.hours) bits.push(g.hours);
    if (g.max_opens) bits.push(`${g.opens}/${g.max_opens}`);
    return bits.join(" ");
  });
  const li = el("li", { id: `person-${p.id}`, class: p.revoked ? "revoked" : "", "data-handle": p.handle },
    `${p.name} (${p.handle}, ${p.kind}) `, el("span", { class: "sub" }, p.revoked ? T.revoked_label : grants.join("; ")));
  if (manage && !p.revoked) {
    li.append(el("button", { class: "revoke", onclick: async () => {
      const r = await api("POST", `/api/people/${p.id}/revoke`);
      if (r.ok) li.replaceWith(personRow(r.data, manage, doors));
    } }, T.revoke));
  }
  return li;
}

function inviteBox(url) {
  return el("div", { class: "invite" }, el("p", {}, T.invite_hint),
    el("input", { class: "invite-url", readonly: true, value: url }),
    el("img", { alt: T.invite, src: `/qr.svg?data=${encodeURIComponent(url)}`, width: 180, height: 180 }));
}

function tenantForm(h, doors, out) {
  const doorBoxes = Object.entries(doors).map(([id, name]) => el("label", { class: "inline" }, el("input", { type: "checkbox", value: id, checked: true }), name));
  const f = el("form", { class: "add-tenant card" }, el("h4", {}, T.add_tenant),
    el("label", {}, T.name, el("input", { name: "name", required: true })),
    el("label", {}, T.handle, el("input", { name: "handle", pattern: "[A-Za-z0-9._:@\\-]{1,64}" })),
    el("label", {}, T.move_in, el("input", { name: "from", type: "date" })),
    el("label", {}, T.move_out, el("input", { name: "until", type: "date" })),
    el("label", {}, T.hours, el("input", { name: "hours", placeholder: "07:00-22:00" })),
    el("div", {}, doorBoxes), el("button", { class: "primary", type: "submit" }, T.create));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (n) => f.elements[n].value;
    const ts = (d) => (d ? new Date(d + "T00:00:00").getTime() / 1000 : null);
    const grants = doorBoxes.map((l) => l.querySelector("input")).filter((i) => i.checked)
      .map((i) => ({ door: Number(i.value), valid_from: ts(v("from")), valid_until: ts(v("until")), hours: v("hours") }));
    const r = await api("POST", `/api/houses/${h.id}/tenants`, { name: v("name"), handle: v("handle"), grants });
    out.replaceChildren(r.ok ? inviteBox(r.data.invite_url) : el("p", { class: "err" }, JSON.stringify(r.data)));
    if (r.ok) loadHouse(h.id).catch(console.error);
  });
  return f;
}

function passForm(h, doors, out) {
  const sel = el("select", { name: "door" }, Object.entries(doors).map(([id, name]) => el("option", { value: id }, name)));
  const f = el("form", { class: "add-pass card" }, el("h4", {}, T.add_pass),
    el("label", {}, T.name, el("input", { name: "name", required: true })), sel,
    el("label", {}, T.pass_hours, el("input", { name: "hours", type: "number", value: 4, min: 1, max: 72 })),
    el("label", {}, T.max_opens, el("input", { name: "opens", type: "number", value: 5, min: 1, max: 100 })),
    el("button", { class: "primary", type: "submit" }, T.create));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", `/api/houses/${h.id}/passes`, {
      name: f.elements.name.value, door: Number(sel.value), hours_valid: Number(f.elements.hours.value), max_opens: Number(f.elements.opens.value) });
    out.replaceChildren(r.ok ? inviteBox(r.data.invite_url) : el("p", { class: "err" }, JSON.stringify(r.data)));
    if (r.ok) loadHouse(h.id).catch(console.error);
  });
  return f;
}

// Live updates wait while a list is (re)loaded, then apply in order: an update that came
// during the fetch must not be painted on the section the fetched one replaces.
let loading = 0;
const held = [];

async function quietly(work) {
  loading++;
  try { return await work(); } finally {
    loading--;
    while (loading === 0 && held.length) {
      const [apply, data] = held.shift();
      try { apply(data); } catch (e) { console.error(e); }
    }
  }
}

function onLive(es, kind, apply) {
  es.addEventListener(kind, (e) => {
    const data = JSON.parse(e.data);
    if (loading) held.push([apply, data]); else apply(data);
  });
}

// Two loads may overlap (the page's first and the first "sync"): only the newest started
// may paint, since an older answer may lack what happened just before the page subscribed.
const newest = { all: 0 };

const loadHouse = (id) => quietly(() => renderHouse(id));

async function renderHouse(id) {
  const mine = newest[id] = (newest[id] || 0) + 1;
  const manage = document.getElementById("houses").dataset.manage === "yes";
  const [h, log] = await Promise.all([api("GET", `/api/houses/${id}`), api("GET", `/api/houses/${id}/log?limit=50`)]);
  if (newest[id] !== mine) return;
  if (!h.ok) throw new Error(`house ${id}: ${h.status}`);
  const house = h.data;
  const doors = Object.fromEntries(house.doors.map((d) => [d.id, d.name]));
  const status = house.online === false ? T.gateway_offline : house.online ? T.online : "";
  const sec = el("section", { class: "house", id: `house-${house.id}`, "data-house": house.id },
    el("h2", {}, house.name, el("small", { class: "status", "data-online": String(house.online) }, ` ${status}`)),
    el("h3", {}, T.doors), el("ul", { class: "doors-list" }, house.doors.map(doorRow)));
  if (manage) {
    const out = el("div", { class: "invite-out" });
    sec.append(el("h3", {}, T.people), el("ul", { class: "people" }, house.people.map((p) => personRow(p, manage, doors))),
      el("div", { class: "forms" }, tenantForm(house, doors, out), passForm(house, doors, out)), out);
  }
  sec.append(el("h3", {}, T.log), el("table", { class: "log" },
    el("thead", {}, el("tr", {}, [T.when, T.doors, T.what, T.who, T.how].map((x) => el("th", {}, x)))),
    el("tbody", {}, (log.ok ? log.data : []).map(accessRow))));
  const old = document.getElementById(`house-${house.id}`);
  // A fresh invite link stays on screen across the re-render that shows the new person; it
  // moves into the new box, which the new forms write to (the old box goes with the old ones).
  const shown = old?.querySelector(".invite-out");
  if (shown) sec.querySelector(".invite-out")?.replaceChildren(...shown.childNodes);
  if (old) old.replaceWith(sec); else document.getElementById("houses").append(sec);
  // The house is shown, but an empty log is not the log: the caller tries again.
  if (!log.ok) throw new Error(`log of house ${id}: ${log.status}`);
}

async function loadAll() {
  const mine = ++newest.all;
  const [houses, alarms] = await Promise.all([api("GET", "/api/houses"), api("GET", "/api/alarms")]);
  if (newest.all !== mine) return;
  if (alarms.ok) alarms.data.slice().reverse().forEach(upsertIncident);
  if (houses.ok) for (const h of houses.data) await loadHouse(h.id);
  if (!houses.ok || !alarms.ok) throw new Error(`lists: ${houses.status} ${alarms.status}`);
}

function staffPage() {
  document.getElementById("logout").addEventListener("click", async () => { await api("POST", "/api/logout"); location.href = "/login"; });
  const live = document.getElementById("live");
  quietly(loadAll).catch(console.error);  // shown at once, even where a proxy holds the stream back
  const es = new EventSource("/api/stream");
  const setLive = (on) => { live.classList.toggle("on", on); document.body.dataset.live = on ? "yes" : "no"; };
  // "sync": subscribed from now on (first connection, reconnection, or this page fell behind):
  // the lists are loaded again, so nothing that happened meanwhile is missing; only then is
  // the page live. Lists that could not be loaded (any of them: houses, alarms, a house, its
  // log) are tried again, and the page is not live meanwhile. Only the newest load decides:
  // an older one that was overtaken says nothing of what the page shows.
  const catchUp = () => {
    const load = quietly(loadAll);
    const mine = newest.all;  // loadAll took its number before its first await
    load.then(
      () => { if (newest.all === mine) setLive(true); },
      (e) => { if (newest.all !== mine) return; console.error(e); setLive(false); setTimeout(catchUp, LOAD_AGAIN_MS); });
  };
  es.addEventListener("sync", catchUp);
  es.onerror = () => setLive(false);
  onLive(es, "incident", upsertIncident);
  onLive(es, "door", (d) => document.getElementById(`door-${d.id}`)?.replaceWith(doorRow(d)));
  onLive(es, "access", (a) => {
    const body = document.querySelector(`#house-${a.house} table.log tbody`);
    if (body && !body.querySelector(`[data-access="${a.id}"]`)) body.prepend(accessRow(a));
  });
  onLive(es, "house", (h) => {
    const s = document.querySelector(`#house-${h.id} .status`);
    if (s) { s.dataset.online = String(h.online); s.textContent = ` ${h.online === false ? T.gateway_offline : T.online}`; }
  });
  onLive(es, "person", (p) => loadHouse(p.house).catch(console.error));
}

const PAGES = { login: loginPage, invite: invitePage, phone: phonePage, landlord: staffPage, grid: staffPage };
document.addEventListener("DOMContentLoaded", () => PAGES[document.body.dataset.page]?.());
