// fedledger explorer: renders the JSON API (api/...) into tables and inline-SVG charts. No dependencies.
// Amounts arrive as exact decimal strings (wei) and are shown as such; any arithmetic on them uses BigInt.
// Data from the API is only ever inserted as text (textContent / attributes), never as HTML.
"use strict";

(function () {
  const POLL_MS = 5000;
  const COLORS = ["#2457c5", "#d9480f", "#0f8a5f", "#b8860b", "#7b3fc4", "#0b86a8", "#c2255c", "#5c940d", "#495057", "#e67700"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const state = { status: null, bounties: [], institutions: [], reputation: null, detail: null, selected: null, colorOf: {}, nameOf: {} };

  // ---- DOM helpers -------------------------------------------------------------------------------------
  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "testid") node.setAttribute("data-testid", value);
      else if (key === "class") node.setAttribute("class", value);
      else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
      else node.setAttribute(key, String(value));
    }
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    return append(node, children);
  }
  function sv(tag, attrs, ...children) {
    const node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    return append(node, children);
  }

  // ---- formatting --------------------------------------------------------------------------------------
  function short(address) { return address ? address.slice(0, 6) + "\u2026" + address.slice(-4) : ""; }
  function date(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC" : ""; }
  function pct(bp) { return (bp / 100).toFixed(2) + "%"; }
  function amount(a, testid) {
    const node = el("span", { class: "amount", testid, "data-wei": a.wei, "data-eth": a.eth === null ? "" : a.eth });
    if (a.eth !== null) append(node, [el("span", { class: "eth" }, a.eth + " ETH"), el("span", { class: "wei" }, a.wei + " wei")]);
    else append(node, [el("span", { class: "eth" }, a.wei), el("span", { class: "wei" }, "base units")]);
    return node;
  }
  function hash(h, testid) { return el("code", { class: "hash", testid, "data-hash": h, title: h }, h); }
  function who(address, name) {
    const color = state.colorOf[address] || "#999";
    const label = name || state.nameOf[address];
    return el("span", { class: "who", title: address, "data-address": address },
      el("i", { class: "swatch", style: { background: color } }),
      label ? el("span", {}, label) : null,
      el("span", { class: label ? "addr" : "mono" }, short(address)));
  }
  function badge(text, testid) { return el("span", { class: "badge " + text, testid }, text); }
  function check(value, testid, okText, badText) {
    if (value === null || value === undefined) return el("span", { class: "check na", testid, "data-value": "none" }, "\u2013 not checked");
    return el("span", { class: "check " + (value ? "ok" : "bad"), testid, "data-value": String(value) },
      value ? "\u2713 " + okText : "\u2717 " + badText);
  }
  function table(headers, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.startsWith("=") ? "num" : "" }, h.replace(/^=/, ""))))),
      el("tbody", {}, rows));
  }
  function niceStep(range, ticks) {
    const raw = range / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  }
  function tickLabel(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(1);
    return String(Math.round(v * 1e6) / 1e6);
  }
  function assignColors() {
    state.colorOf = {}; state.nameOf = {};
    state.institutions.forEach((inst, i) => {
      state.colorOf[inst.address] = COLORS[i % COLORS.length];
      state.nameOf[inst.address] = inst.name;
    });
  }

  // ---- fetching ----------------------------------------------------------------------------------------
  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(path + ": " + response.status + " " + detail);
    }
    return response.json();
  }
  function selectedFromHash() {
    const m = /^#\/bounty\/(\d+)$/.exec(location.hash);
    return m ? Number(m[1]) : null;
  }

  // ---- header ------------------------------------------------------------------------------------------
  function renderStatus(s) {
    const node = document.getElementById("status");
    node.replaceChildren();
    append(node, [
      el("span", {}, "chain ", el("code", { testid: "status-chain-id" }, String(s.chain_id))),
      " \u00b7 contract ", el("code", { testid: "status-contract", title: s.contract }, short(s.contract)),
      " \u00b7 synced to block ", el("code", { testid: "status-synced-block" }, String(s.synced_block ?? "\u2013")),
      " \u00b7 ", el("span", { testid: "status-events" }, String(s.events) + " events"),
      s.sync_error ? el("div", { class: "err", testid: "status-error" }, "chain unreachable, showing the index as it is: " + s.sync_error) : null]);
  }

  // ---- bounties ----------------------------------------------------------------------------------------
  function renderBounties() {
    const box = document.getElementById("bounty-list");
    if (!state.bounties.length) { box.replaceChildren(el("p", { class: "muted" }, "No bounty on this contract yet.")); return; }
    const rows = state.bounties.map((b) => el("tr", { testid: "bounty-row-" + b.id, "data-bounty-id": b.id, class: b.id === state.selected ? "selected" : "" },
      el("td", {}, el("a", { href: "#/bounty/" + b.id, testid: "bounty-link-" + b.id }, "#" + b.id)),
      el("td", {}, badge(b.status, "bounty-status-" + b.id)),
      el("td", { testid: "bounty-asset-" + b.id, title: b.asset.token }, b.asset.symbol),
      el("td", { testid: "bounty-rounds-" + b.id }, b.rounds_finalized + " / " + b.num_rounds),
      ["funded", "credited", "claimed", "refunded", "escrowed"].map((k) => el("td", { class: "num" }, amount(b.books[k], "bounty-" + k + "-" + b.id))),
      el("td", { class: "small muted", title: date(b.deadline) }, date(b.deadline).slice(0, 10))));
    box.replaceChildren(table(["bounty", "status", "asset", "rounds", "=funded", "=credited", "=claimed", "=refunded", "=escrowed", "deadline"], rows,
      { testid: "bounty-table" }));
  }

  // ---- institutions ------------------------------------------------------------------------------------
  function renderInstitutions() {
    const box = document.getElementById("institutions");
    if (!state.institutions.length) { box.replaceChildren(el("p", { class: "muted" }, "No institution has joined yet.")); return; }
    const rows = state.institutions.map((inst) => {
      const eth = inst.earnings.find((e) => e.asset.is_eth);
      const zero = { wei: "0", eth: "0.000000" };
      return el("tr", { testid: "institution-" + inst.address, "data-address": inst.address },
        el("td", { testid: "inst-name-" + inst.address }, who(inst.address, inst.name), " ", badge(inst.status, "inst-status-" + inst.address)),
        el("td", { class: "num" }, amount(inst.stake, "inst-stake-" + inst.address)),
        el("td", { class: "num mono", testid: "inst-reputation-" + inst.address, "data-reputation": inst.reputation, title: pct(inst.reputation) },
          String(inst.reputation), el("span", { class: "repbar" }, el("i", { style: { width: inst.reputation / 100 + "%", background: state.colorOf[inst.address] } }))),
        el("td", { class: "num mono", testid: "inst-rounds-" + inst.address }, String(inst.rounds_scored)),
        el("td", { class: "num mono", testid: "inst-cumulative-score-" + inst.address }, inst.cumulative_score),
        el("td", { class: "num" }, amount(eth ? eth.credited : zero, "inst-credited-" + inst.address)),
        el("td", { class: "num" }, amount(eth ? eth.claimed : zero, "inst-claimed-" + inst.address)));
    });
    box.replaceChildren(table(["institution", "=stake", "=reputation", "=rounds scored", "=cumulative score", "=credited (ETH)", "=claimed (ETH)"], rows, { testid: "institution-table" }));
  }

  // ---- charts ------------------------------------------------------------------------------------------
  function reputationChart(rep) {
    const W = 1180, H = 250, L = 50, R = 30, T = 10, B = 30;
    const cols = rep.rounds.length;
    const x = (i) => L + (cols <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (cols - 1));
    const y = (bp) => T + (1 - bp / 10000) * (H - T - B);
    const svg = sv("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, testid: "reputation-chart", role: "img", "aria-label": "reputation over time" });
    for (let bp = 0; bp <= 10000; bp += 2500) {
      svg.append(sv("line", { class: bp ? "grid" : "axis", x1: L, x2: W - R, y1: y(bp), y2: y(bp) }),
        sv("text", { x: L - 6, y: y(bp) + 4, "text-anchor": "end" }, String(bp)));
    }
    const every = Math.max(1, Math.ceil(cols / 10));
    rep.rounds.forEach((c, i) => {
      if (i % every === 0 || i === cols - 1) svg.append(sv("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, c.label));
    });
    for (const s of rep.series) {
      const color = state.colorOf[s.institution] || "#999";
      if (s.points.length > 1) {
        svg.append(sv("polyline", { fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round",
          points: s.points.map((p) => x(p.index) + "," + y(p.reputation)).join(" ") }));
      }
      for (const p of s.points) {
        const c = rep.rounds[p.index];
        svg.append(sv("circle", {
          cx: x(p.index), cy: y(p.reputation), r: p.scored ? 4 : 2.5, fill: p.scored ? color : "#fff", stroke: color, "stroke-width": 1.5,
          testid: "rep-point-" + s.institution + "-" + p.index, "data-reputation": p.reputation,
          "data-bounty": c.bounty ?? "", "data-round": c.round ?? "", "data-scored": String(p.scored),
        }, sv("title", {}, `${s.name} \u00b7 ${c.label}: ${p.reputation} bp` + (p.scored ? ` (score ${p.score})` : " (not scored)"))));
      }
    }
    return el("div", {},
      svg,
      el("div", { class: "legend" }, rep.series.map((s) => el("span", {}, el("i", { class: "swatch", style: { background: state.colorOf[s.institution] } }), s.name))),
      el("div", { class: "small muted" }, "filled: scored in that round; hollow: unchanged (not scored)."));
  }

  function barChart({ testid, rounds, series, stacked, yLabel, format }) {
    // rounds: labels; series: [{key, color, values: [number|null]}]
    const W = 560, H = 220, L = 58, R = 10, T = 10, B = 30;
    const svg = sv("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, testid, role: "img" });
    let lo = 0, hi = 0;
    rounds.forEach((_, i) => {
      if (stacked) {
        hi = Math.max(hi, series.reduce((sum, s) => sum + Math.max(s.values[i] || 0, 0), 0));
      } else {
        for (const s of series) { const v = s.values[i]; if (v !== null) { hi = Math.max(hi, v); lo = Math.min(lo, v); } }
      }
    });
    if (hi === lo) hi = lo + 1;
    const step = niceStep(hi - lo, 4);
    hi = Math.ceil(hi / step) * step; lo = Math.floor(lo / step) * step;
    const y = (v) => T + ((hi - v) / (hi - lo)) * (H - T - B);
    for (let v = lo; v <= hi + step / 2; v += step) {
      svg.append(sv("line", { class: Math.abs(v) < step / 2 ? "axis" : "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        sv("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, tickLabel(v)));
    }
    svg.append(sv("text", { x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`, "text-anchor": "middle" }, yLabel));
    const slot = (W - L - R) / Math.max(rounds.length, 1);
    rounds.forEach((label, i) => {
      const x0 = L + i * slot;
      svg.append(sv("text", { x: x0 + slot / 2, y: H - B + 16, "text-anchor": "middle" }, label));
      if (stacked) {
        let acc = 0;
        const bw = Math.min(slot * 0.5, 60);
        for (const s of series) {
          const v = s.values[i];
          if (!v || v <= 0) continue;
          svg.append(sv("rect", { x: x0 + (slot - bw) / 2, y: y(acc + v), width: bw, height: y(acc) - y(acc + v), fill: s.color },
            sv("title", {}, `${s.name} \u00b7 ${label}: ${format(s.raw[i])}`)));
          acc += v;
        }
      } else {
        const present = series.filter((s) => s.values[i] !== null);
        const group = Math.min(slot * 0.7, 26 * present.length);
        const bw = group / Math.max(present.length, 1);
        present.forEach((s, j) => {
          const v = s.values[i];
          const top = y(Math.max(v, 0)), bottom = y(Math.min(v, 0));
          svg.append(sv("rect", { x: x0 + (slot - group) / 2 + j * bw + 1, y: top, width: Math.max(bw - 2, 1), height: Math.max(bottom - top, 1), fill: s.color },
            sv("title", {}, `${s.name} \u00b7 ${label}: ${format(s.raw[i])}`)));
        });
      }
    });
    return el("div", {}, svg,
      el("div", { class: "legend" }, series.map((s) => el("span", {}, el("i", { class: "swatch", style: { background: s.color } }), s.name))));
  }

  function roundSeries(d, pick) {
    const members = d.institutions.map((i) => i.institution);
    return members.map((addr) => {
      const raw = d.rounds.map((r) => { const c = r.commitments.find((c) => c.institution === addr); return c && c.scored ? pick(c) : null; });
      return { key: addr, name: state.nameOf[addr] || short(addr), color: state.colorOf[addr] || "#999", raw, values: raw.map((v) => (v === null ? null : Number(v))) };
    });
  }

  function booksBar(d) {
    const b = d.books;
    const funded = BigInt(b.funded.wei);
    const parts = [
      ["claimed", BigInt(b.claimed.wei), "#0f8a5f"],
      ["credited, unclaimed", BigInt(b.unclaimed.wei), "#7fd1ae"],
      ["refunded", BigInt(b.refunded.wei), "#adb5bd"],
      ["escrowed", BigInt(b.escrowed.wei), "#f2b84b"],
    ];
    const W = 1000, H = 22;
    const svg = sv("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", testid: "books-chart-" + d.id, style: { height: "22px" } });
    let x = 0;
    if (funded > 0n) {
      for (const [name, value, color] of parts) {
        const w = Number((value * 1000000n) / funded) / 1000000 * W;
        if (w > 0) svg.append(sv("rect", { x, y: 0, width: w, height: H, fill: color }, sv("title", {}, `${name}: ${value} wei`)));
        x += w;
      }
    } else {
      svg.append(sv("rect", { x: 0, y: 0, width: W, height: H, fill: "#eceef2" }));
    }
    return el("div", {}, svg,
      el("div", { class: "legend" }, parts.map(([name, , color]) => el("span", {}, el("i", { class: "swatch", style: { background: color } }), name))));
  }

  // ---- bounty detail -----------------------------------------------------------------------------------
  function renderDetail() {
    const box = document.getElementById("bounty");
    const d = state.detail;
    if (!d) { box.replaceChildren(); return; }
    const id = d.id;
    const identity = BigInt(d.books.funded.wei) === BigInt(d.books.credited.wei) + BigInt(d.books.refunded.wei) + BigInt(d.books.escrowed.wei);
    const head = el("section", { class: "card", testid: "bounty-detail-" + id, "data-bounty-id": id },
      el("div", { class: "detail-head" }, el("h2", {}, "Bounty #" + id), badge(d.status, "detail-status-" + id),
        el("span", { class: "muted" }, d.asset.symbol + " \u00b7 " + d.rounds_finalized + " of " + d.num_rounds + " rounds finalized")),
      el("div", { class: "meta" },
        el("div", {}, el("span", { class: "k" }, "sponsor"), el("code", { testid: "sponsor-" + id }, d.sponsor)),
        el("div", {}, el("span", { class: "k" }, "aggregator"), el("code", { testid: "aggregator-" + id }, d.aggregator)),
        el("div", {}, el("span", { class: "k" }, "deadline"), date(d.deadline)),
        el("div", {}, el("span", { class: "k" }, "created"), "block " + d.created_block + " \u00b7 min reputation " + d.min_reputation),
        el("div", { style: { gridColumn: "span 2" } }, el("span", { class: "k" }, "task spec hash"), hash(d.task_spec_hash, "task-hash-" + id)),
        el("div", { style: { gridColumn: "span 2" } }, el("span", { class: "k" }, "validation set hash"), hash(d.validation_set_hash, "validation-hash-" + id))),
      el("div", { class: "books", testid: "books-" + id },
        ["funded", "credited", "claimed", "unclaimed", "refunded", "escrowed"].map((k) =>
          el("div", {}, el("span", { class: "label" }, k), amount(d.books[k], "books-" + k + "-" + id)))),
      booksBar(d),
      el("div", { class: "checks" },
        check(identity, "books-identity-" + id, "funded = credited + refunded + escrowed", "funded \u2260 credited + refunded + escrowed"),
        check(d.books.matches_contract, "books-matches-contract-" + id, "books match the contract", "books differ from the contract"),
        check(d.books.no_overpayment, "books-no-overpayment-" + id, "no one claimed more than credited", "an institution claimed more than credited")));

    const labels = d.rounds.map((r) => "round " + r.round);
    const charts = el("div", { class: "grid2" },
      el("section", { class: "card" }, el("h2", {}, "Credits per round ", el("span", { class: "muted small" }, d.asset.is_eth ? "ETH" : "base units")),
        barChart({ testid: "credits-chart-" + id, rounds: labels, stacked: true, yLabel: d.asset.is_eth ? "ETH" : "units",
          series: roundSeries(d, (c) => c.credit.wei).map((s) => ({ ...s, values: s.values.map((v) => (v === null ? null : d.asset.is_eth ? v / 1e18 : v)) })),
          format: (w) => (w === null ? "" : w + " wei") })),
      el("section", { class: "card" }, el("h2", {}, "Scores per round ", el("span", { class: "muted small" }, "fixed-point integers as posted")),
        barChart({ testid: "scores-chart-" + id, rounds: labels, stacked: false, yLabel: "score", series: roundSeries(d, (c) => c.score), format: (s) => String(s) })));

    const rounds = el("section", { class: "card", testid: "rounds-" + id }, el("h2", {}, "Rounds"),
      d.rounds.length ? d.rounds.map((r) => renderRound(id, r)) : el("p", { class: "muted" }, "No round opened yet."));

    const members = el("section", { class: "card" }, el("h2", {}, "Institutions in this bounty"),
      table(["institution", "=credited", "=claimed", "=unclaimed", "=cumulative score", "=rounds scored", "=reputation"],
        d.institutions.map((i) => el("tr", { testid: "member-" + id + "-" + i.institution },
          el("td", {}, who(i.institution, i.name)),
          el("td", { class: "num" }, amount(i.credited, "credited-" + id + "-" + i.institution)),
          el("td", { class: "num" }, amount(i.claimed, "claimed-" + id + "-" + i.institution)),
          el("td", { class: "num" }, amount(i.unclaimed, "unclaimed-" + id + "-" + i.institution)),
          el("td", { class: "num mono", testid: "cumulative-score-" + id + "-" + i.institution }, i.cumulative_score),
          el("td", { class: "num mono" }, String(i.rounds_scored)),
          el("td", { class: "num mono", testid: "member-reputation-" + id + "-" + i.institution, "data-reputation": i.reputation ?? "" },
            i.reputation === null ? "\u2013" : String(i.reputation))))));

    const moves = (list, prefix) => table(["kind", "party", "=amount", "block", "tx"], list.map((m, n) =>
      el("tr", { testid: prefix + "-" + id + "-" + n, "data-kind": m.kind, "data-party": m.party },
        el("td", {}, m.kind), el("td", {}, who(m.party, m.name)),
        el("td", { class: "num" }, amount(m.amount, prefix + "-amount-" + id + "-" + n), m.asset.is_eth === d.asset.is_eth ? null : el("div", { class: "small muted" }, m.asset.symbol)),
        el("td", { class: "mono" }, String(m.block)), el("td", {}, el("code", { title: m.tx }, short(m.tx))))));
    const money = el("div", { class: "grid2" },
      el("section", { class: "card" }, el("h2", {}, "Payouts"), d.payouts.length ? moves(d.payouts, "payout") : el("p", { class: "muted" }, "Nothing paid out yet.")),
      el("section", { class: "card" }, el("h2", {}, "Funding"), d.fundings.length ? moves(d.fundings, "funding") : el("p", { class: "muted" }, "No funding.")));

    const timeline = el("section", { class: "card" }, el("details", { testid: "timeline-" + id },
      el("summary", {}, "Timeline: " + d.timeline.length + " events"),
      table(["block", "time", "event", "arguments"], d.timeline.map((t) => el("tr", {},
        el("td", { class: "mono" }, String(t.block)), el("td", { class: "small" }, date(t.time)), el("td", {}, t.event),
        el("td", { class: "mono small" }, Object.entries(t.args).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  ")))))));

    box.replaceChildren(head, charts, rounds, members, money, timeline);
  }

  function renderRound(id, r) {
    const key = id + "-" + r.round;
    return el("div", { class: "round", testid: "round-" + key, "data-round": r.round },
      el("div", { class: "round-head" }, el("strong", {}, "Round " + r.round), badge(r.status, "round-status-" + key),
        el("span", { class: "muted" }, "opened block " + r.opened_block + " \u00b7 commits until " + date(r.commit_deadline)),
        r.reward ? el("span", {}, "reward ", amount(r.reward, "reward-" + key)) : null,
        r.participants !== null ? el("span", { class: "muted" }, r.participants + " scored") : null),
      el("div", { class: "models" },
        el("span", { class: "muted" }, "model in"), hash(r.global_model_hash, "model-in-" + key),
        el("span", { class: "muted" }, "model out"), r.new_model_hash ? hash(r.new_model_hash, "model-out-" + key) : el("span", { class: "muted", testid: "model-out-" + key }, "not finalized")),
      committee(key, "attested by", "attestations", r.attestations),
      committee(key, "dissented", "dissents", r.dissents),
      table(["institution", "update hash (sha256)", "=samples", "=\u03b5 spent", "=score", "=credit", "=reputation after"],
        r.commitments.map((c) => {
          const k = key + "-" + c.institution;
          return el("tr", { testid: "commit-" + k, "data-address": c.institution },
            el("td", {}, who(c.institution, c.name)),
            el("td", {}, hash(c.update_hash, "update-hash-" + k)),
            el("td", { class: "num mono", testid: "samples-" + k }, c.sample_count),
            el("td", { class: "num mono", testid: "epsilon-" + k, "data-epsilon": c.epsilon ?? "" }, c.epsilon === null ? "\u2013" : String(c.epsilon)),
            el("td", { class: "num mono", testid: "score-" + k, "data-score": c.score ?? "" }, c.scored ? c.score : "not scored"),
            el("td", { class: "num" }, c.credit ? amount(c.credit, "credit-" + k) : el("span", { class: "muted" }, "\u2013")),
            el("td", { class: "num mono", testid: "reputation-" + k, "data-reputation": c.reputation ?? "" }, c.reputation === null ? "\u2013" : String(c.reputation)));
        })));
  }

  // A round's scoring-committee members (OutcomeAttested or ScorerDissented), with the outcome digest each signed.
  function committee(key, label, kind, items) {
    if (!items || !items.length) return null;
    return el("div", { class: "models", testid: kind + "-" + key },
      el("span", { class: "muted" }, label),
      // one line per scorer, all in the value column, so that none wraps under the label
      el("div", { class: "scorers" }, items.map((a) => el("div", { testid: kind.slice(0, -1) + "-" + key + "-" + a.scorer, "data-scorer": a.scorer,
        "data-digest": a.outcome_digest }, who(a.scorer, a.name), " ", hash(a.outcome_digest, kind + "-digest-" + key + "-" + a.scorer)))));
  }

  function renderReputation() {
    const box = document.getElementById("reputation");
    const rep = state.reputation;
    if (!rep || !rep.series.length) { box.replaceChildren(el("p", { class: "muted" }, "No institution yet.")); return; }
    box.replaceChildren(reputationChart(rep));
  }

  // ---- main loop ---------------------------------------------------------------------------------------
  async function load() {
    try {
      const [status, bounties, institutions, reputation] = await Promise.all([
        getJSON("api/status"), getJSON("api/bounties"), getJSON("api/institutions"), getJSON("api/reputation")]);
      Object.assign(state, { status, bounties, institutions, reputation });
      assignColors();
      const wanted = selectedFromHash();
      state.selected = wanted ?? (bounties.length ? bounties[bounties.length - 1].id : null);
      state.detail = state.selected === null ? null : await getJSON("api/bounties/" + state.selected);
      renderStatus(status); renderBounties(); renderInstitutions(); renderReputation(); renderDetail();
      document.body.dataset.state = "ready";
      document.body.dataset.events = String(status.events);
    } catch (error) {
      document.getElementById("bounty").replaceChildren(el("div", { class: "error-box", testid: "error" }, String(error.message || error)));
      document.body.dataset.state = "error";
    }
  }

  async function poll() {
    try {
      const status = await getJSON("api/status");
      const changed = !state.status || status.events !== state.status.events;
      state.status = status;
      renderStatus(status);
      if (changed) await load();
    } catch (error) { /* keep showing what we have; the next poll retries */ }
  }

  window.addEventListener("hashchange", load);
  load();
  setInterval(poll, POLL_MS);
})();
