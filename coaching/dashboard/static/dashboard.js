// The programme dashboard: signs in through the API and draws the metrics with plain DOM.
// Every value from the server is set with textContent (never as HTML).
"use strict";

const API = "/api/v1";
const STEP_LABELS = {
  invited: "Invited",
  invite_opened: "Invite opened",
  registered: "Registered",
  consented: "Consented",
  baseline_completed: "Baseline questionnaires",
  first_lesson_completed: "First lesson",
  first_video_exchanged: "First video exchange",
  active_week_4: "Active in week 4",
  programme_completed: "Programme completed",
};
const state = { token: null, refresh: null, outcomes: null };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function pct(value) { return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + " %"; }
function num(value, digits) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits ?? 0); }

async function signIn(email, password) {
  const response = await fetch(API + "/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || "Sign-in failed");
  if (body.role === "patient") throw new Error("This dashboard is for programme owners and therapists");
  state.token = body.access_token;
  state.refresh = body.refresh_token;
  return body;
}

async function exchangeRefreshToken() {
  const response = await fetch(API + "/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: state.refresh }),
  });
  if (!response.ok) return false;
  const body = await response.json();
  state.token = body.access_token;
  state.refresh = body.refresh_token;
  return true;
}

// One refresh at a time: the requests sent side by side that all find the access token expired
// wait for the same one. A refresh token works once, and presenting it again revokes the login.
let refreshing = null;
function refreshToken() {
  if (!refreshing) refreshing = exchangeRefreshToken().finally(() => { refreshing = null; });
  return refreshing;
}

// The login has ended (refresh token expired or revoked): back to the sign-in form, which
// says so, instead of a board whose every request fails.
function sessionEnded() {
  state.token = state.refresh = null;
  $("board").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("password").value = "";
  $("signin-error").textContent = "Your session has ended: please sign in again.";
  delete document.body.dataset.loaded;
}

async function api(path, raw) {
  const send = () => fetch(API + path, { headers: { Authorization: "Bearer " + state.token } });
  const sentWith = state.token;
  let response = await send();
  if (response.status === 401 && state.token) {
    // Another request may have refreshed the token meanwhile: then only send again.
    if (state.token !== sentWith || (state.refresh && (await refreshToken()))) {
      response = await send();
    }
    if (response.status === 401) sessionEnded();
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).message; } catch (e) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return raw ? response : response.json();
}

function filters(extra) {
  const params = new URLSearchParams();
  if ($("from").value) params.set("from", $("from").value);
  if ($("to").value) params.set("to", $("to").value);
  for (const [key, value] of Object.entries(extra || {})) if (value) params.set(key, value);
  const query = params.toString();
  return query ? "?" + query : "";
}

function drawFunnel(data) {
  const box = $("funnel");
  box.replaceChildren();
  const start = data.steps[0].count || 1;
  box.append(el("div", { class: "funnel-row head" },
    el("span", {}, "Step"), el("span", {}, ""), el("span", {}, "Count"),
    el("span", {}, "From previous"), el("span", {}, "In progress"), el("span", {}, "Median hours")));
  for (const step of data.steps) {
    const width = Math.max(0.5, (100 * step.count) / start);
    box.append(el("div", { class: "funnel-row", "data-step": step.key },
      el("span", { class: "label" }, STEP_LABELS[step.key] || step.key),
      el("span", { class: "track" }, el("span", { class: "bar", style: { width: width + "%" } },
        el("span", { class: "bar-text" }, pct(step.conversion_from_start)))),
      el("span", { class: "count", "data-count": String(step.count) }, String(step.count)),
      el("span", { class: "conv", "data-conversion": String(step.conversion_from_previous) }, pct(step.conversion_from_previous)),
      el("span", { class: "progress", "data-in-progress": String(step.in_progress) }, String(step.in_progress)),
      el("span", { class: "median" }, num(step.median_hours_from_previous, 1))));
  }
  const groups = Object.entries(data.breakdown || {});
  const part = $("funnel-breakdown");
  part.replaceChildren();
  if (!groups.length) return;
  const table = el("table", { id: "breakdown-table", class: "breakdown" });
  table.append(el("tr", {}, el("th", {}, $("breakdown").selectedOptions[0].textContent),
    ...data.steps.map((s) => el("th", {}, STEP_LABELS[s.key] || s.key))));
  for (const [value, group] of groups) {
    table.append(el("tr", { "data-group": value }, el("th", {}, group.label || value),
      ...group.steps.map((s) => el("td", { "data-step": s.key, "data-count": String(s.count),
        class: "heat-cell", style: { background: heat(s.conversion_from_start) } },
        String(s.count), el("small", {}, " " + pct(s.conversion_from_start))))));
  }
  part.append(el("h3", {}, "Per " + $("breakdown").selectedOptions[0].textContent), el("div", { class: "scroll" }, table));
}

function heat(share) {
  if (share === null || share === undefined) return "transparent";
  const light = 96 - Math.round(share * 40);
  return `hsl(205, 70%, ${light}%)`;
}

function drawRetention(data) {
  const table = $("retention");
  table.replaceChildren();
  table.append(el("tr", {}, el("th", {}, "Cohort (week of)"), el("th", {}, "Patients"),
    ...Array.from({ length: data.weeks }, (_, i) => el("th", {}, "W" + (i + 1)))));
  for (const cohort of [...data.cohorts, data.total]) {
    table.append(el("tr", { "data-cohort": cohort.cohort },
      el("th", {}, cohort.cohort === "all" ? "All cohorts" : cohort.cohort),
      el("td", {}, String(cohort.size)),
      ...cohort.weeks.map((w) => el("td", { class: "heat-cell", "data-week": String(w.week),
        "data-share": String(w.share), style: { background: heat(w.share) },
        title: `${w.active} of ${w.eligible} active` }, w.share === null ? "" : pct(w.share)))));
  }
}

function drawTable(id, columns, rows) {
  const table = $(id);
  table.replaceChildren();
  table.append(el("tr", {}, ...columns.map(([label]) => el("th", {}, label))));
  if (!rows.length) {
    table.append(el("tr", {}, el("td", { colspan: String(columns.length) }, "No data yet")));
  }
  for (const row of rows) {
    table.append(el("tr", {}, ...columns.map(([, get]) => el("td", {}, String(get(row) ?? "–")))));
  }
}

function unavailable(id, error) {
  const table = $(id);
  table.replaceChildren(el("tr", {}, el("td", {}, error.status === 404 ? "Not available yet" : error.message)));
}

async function load() {
  const status = $("status");
  status.textContent = "Loading…";
  const windowDays = $("window").value || "120";
  try {
    const funnel = await api("/metrics/funnel" + filters({ window_days: windowDays, breakdown: $("breakdown").value }));
    drawFunnel(funnel);
    drawRetention(await api("/metrics/retention" + filters()));
  } catch (error) {
    status.textContent = error.message;
    status.className = "status error";
    return;
  }
  await Promise.all([
    loadOutcomes(),
    api("/metrics/coaching" + filters()).then(drawCoaching).catch((e) => unavailable("coaching", e)),
    api("/metrics/reminders" + filters()).then((data) => drawTable("reminders", [
      ["Category", (r) => r.category],
      ["Scheduled", (r) => r.scheduled],
      ["Sent", (r) => r.sent],
      ["Opened", (r) => r.opened],
      ["Acted on ≤ 24 h", (r) => r.acted_on],
      ["Acted on / sent", (r) => pct(r.share_acted_on)],
    ], data.categories || [])).catch((e) => unavailable("reminders", e)),
  ]);
  status.textContent = "Updated " + new Date().toLocaleTimeString();
  status.className = "status";
  document.body.dataset.loaded = "true";
}

// --- outcomes: one score at a time, one row per practice -------------------------------------

function signed(value, digits) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + Number(value).toFixed(digits);
}

async function loadOutcomes() {
  try {
    state.outcomes = await api("/metrics/outcomes" + filters({ timepoint: $("timepoint").value }));
    drawOutcomes();
  } catch (error) {
    unavailable("outcomes", error);
  }
}

function drawOutcomes() {
  const data = state.outcomes;
  const select = $("outcome-score");
  const shown = data.practices.find((p) => !p.suppressed);
  if (shown && select.options.length === 0) {
    for (const score of shown.scores) {
      select.append(el("option", { value: score.key + "." + score.score }, score.label));
    }
  }
  const chosen = select.value;
  const table = $("outcomes");
  table.replaceChildren(el("tr", {}, ...["Practice", "Patients", "With score", "Baseline",
    "Follow-up", "Mean change", "Reached MIC", "Reached MIC (relative)"].map((h) => el("th", {}, h))));
  if (!data.practices.length) {
    table.append(el("tr", {}, el("td", { colspan: "8" }, "No patients with a baseline and this follow-up yet")));
    return;
  }
  for (const practice of data.practices) {
    const row = el("tr", { "data-practice": practice.practice_id }, el("th", {}, practice.label || practice.practice_id));
    if (practice.suppressed) {
      row.append(el("td", { "data-field": "patients" }, "< 5"),
        el("td", { colspan: "6", class: "muted" }, "suppressed: fewer than 5 patients"));
      table.append(row);
      continue;
    }
    const score = practice.scores.find((s) => s.key + "." + s.score === chosen) || {};
    const cell = (field, text) => el("td", { "data-field": field, "data-value": String(score[field] ?? practice[field]) }, text);
    row.append(el("td", { "data-field": "patients", "data-value": String(practice.patients) }, String(practice.patients)));
    if (!score.key || score.suppressed) {
      row.append(el("td", { "data-field": "score-patients" }, "< 5"),
        el("td", { colspan: "5", class: "muted" }, "suppressed: fewer than 5 patients with this score"));
    } else {
      const better = score.better === "lower" ? "lower is better" : "higher is better";
      row.append(cell("patients", String(score.patients)),
        cell("mean_baseline", num(score.mean_baseline, 2)),
        cell("mean_follow_up", num(score.mean_follow_up, 2)),
        el("td", { "data-field": "mean_change", "data-value": String(score.mean_change), title: better }, signed(score.mean_change, 2)),
        cell("share_mic_absolute", score.mic_absolute === null ? "–" : pct(score.share_mic_absolute) + ` (≥ ${score.mic_absolute})`),
        cell("share_mic_relative", score.mic_relative_percent === null ? "–" : pct(score.share_mic_relative) + ` (≥ ${score.mic_relative_percent} %)`));
    }
    table.append(row);
  }
}

// --- coaching: overall, per practice, per therapist ---------------------------------------------

function drawCoaching(data) {
  const table = $("coaching");
  table.replaceChildren(el("tr", {}, ...["Practice / therapist", "Replies", "Median hours", "Within 48 h",
    "Awaiting (> 48 h)", "Cycles on therapist (longest h)", "Cycles on patient (longest h)"]
    .map((h) => el("th", {}, h))));
  const line = (attrs, label, s, cls) => {
    const cycles = (side) => side.count ? `${side.count} (${num(side.longest_hours_waiting, 1)})` : "0";
    table.append(el("tr", { ...attrs, class: cls || "" }, el("th", {}, label),
      el("td", { "data-field": "replies", "data-value": String(s.replies) }, String(s.replies)),
      el("td", { "data-field": "median_hours", "data-value": String(s.median_hours) }, num(s.median_hours, 1)),
      el("td", { "data-field": "share_within_48h", "data-value": String(s.share_within_48h) }, pct(s.share_within_48h)),
      el("td", { "data-field": "awaiting_reply", "data-value": String(s.awaiting_reply) }, `${s.awaiting_reply} (${s.awaiting_over_48h})`),
      el("td", { "data-field": "cycles_waiting_on_therapist", "data-value": String(s.cycles_waiting_on_therapist.count) }, cycles(s.cycles_waiting_on_therapist)),
      el("td", { "data-field": "cycles_waiting_on_patient", "data-value": String(s.cycles_waiting_on_patient.count) }, cycles(s.cycles_waiting_on_patient))));
  };
  if (!data.practices.length) {
    table.append(el("tr", {}, el("td", { colspan: "7" }, "No messages yet")));
    return;
  }
  line({ "data-practice": "all" }, "All", data.all, "total");
  for (const practice of data.practices) {
    line({ "data-practice": practice.practice_id }, practice.label || practice.practice_id, practice, "group");
    for (const therapist of practice.therapists) {
      line({ "data-therapist": therapist.therapist_id }, (therapist.label || therapist.therapist_id), therapist, "member");
    }
  }
}

async function downloadCsv() {
  const response = await api("/metrics/funnel.csv" + filters({ window_days: $("window").value, breakdown: $("breakdown").value }), true);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: "funnel.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      const who = await signIn($("email").value, $("password").value);
      $("who").textContent = `Signed in as ${who.role}`;
      $("signin").hidden = true;
      $("board").hidden = false;
      $("signout").hidden = false;
      await load();
    } catch (error) {
      $("signin-error").textContent = error.message;
    }
  });
  $("refresh").addEventListener("click", load);
  $("breakdown").addEventListener("change", load);
  $("timepoint").addEventListener("change", loadOutcomes);
  $("outcome-score").addEventListener("change", drawOutcomes);
  $("csv").addEventListener("click", () => downloadCsv().catch((e) => { $("status").textContent = e.message; }));
  $("signout").addEventListener("click", async () => {
    if (state.refresh) {
      await fetch(API + "/auth/logout", { method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + state.token }, body: JSON.stringify({ refresh_token: state.refresh }) });
    }
    state.token = state.refresh = null;
    location.reload();
  });
});
