/* mdactors operator console.
 *
 * Data paths, all public: GET /console/config (ports, symbols, chaos state),
 * the SSE price stream (every symbol's price, 24 h change, feed status), the
 * WebSocket protocol on WS_PORT (the chosen symbol's candles, book, trades),
 * REST (candle history, correlations, /api/v1/listeners) and the chaos API
 * (forms built from GET /chaos/schema; bearer token from sessionStorage).
 *
 * Incoming messages only change `state`; the DOM and the chart are redrawn
 * from it at most RENDER_EVERY_MS apart (in an animation frame), so 10
 * symbols at 10 ticks/s cost 10 redraws a second, not 100. All text goes in
 * through textContent: nothing from the network is parsed as HTML.
 */
(() => {
  "use strict";

  const RENDER_EVERY_MS = 100;
  const BOOK_DEPTH = 10;
  const TAPE_ROWS = 14;
  const HISTORY_LIMIT = 500;
  const STALE_AFTER_MS = 3000;
  const LISTENERS_EVERY_MS = 1500;
  const SCENARIOS_EVERY_MS = 1000;
  const CORRELATIONS_EVERY_MS = 15000;
  const TOKEN_KEY = "mdactors.adminToken";
  const INTERVAL_SECONDS = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400 };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const plain = (text) => String(text || "").replace(/``/g, "");

  const state = {
    config: null,
    symbols: new Map(), // key -> {price, change, status, reason, at}
    selected: null,
    interval: "1m",
    lastDataAt: 0,
    book: null,
    trades: [],
    candle: null, // the forming candle waiting to be drawn
    historyReady: false,
    lastCandleTime: 0,
    scenarios: [],
    timeline: [],
    dirty: new Set(),
  };

  // ---------------------------------------------------------------- rendering

  let frameRequested = false;
  let lastRender = 0;
  function invalidate(part) {
    state.dirty.add(part);
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(frame);
    }
  }
  function frame(now) {
    if (now - lastRender < RENDER_EVERY_MS) {
      requestAnimationFrame(frame);
      return;
    }
    frameRequested = false;
    lastRender = now;
    const dirty = state.dirty;
    state.dirty = new Set();
    if (dirty.has("symbols")) renderSymbols();
    if (dirty.has("candle")) renderCandle();
    if (dirty.has("book")) renderBook();
    if (dirty.has("tape")) renderTape();
  }

  function priceDigits(price) {
    if (price >= 1000) return 2;
    if (price >= 10) return 3;
    if (price >= 0.5) return 5;
    return 6;
  }
  const fmt = (value, digits) => (value == null || Number.isNaN(value) ? "—" : Number(value).toFixed(digits));
  const fmtPrice = (value) => (value == null ? "—" : fmt(value, priceDigits(value)));
  const ageText = (ms) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`);

  function setConn(id, label, stateName, detail) {
    const node = $(id);
    node.dataset.state = stateName;
    node.textContent = `${label}: ${stateName}${detail ? ` (${detail})` : ""}`;
  }

  function touch() {
    if (!state.lastDataAt) performance.mark("mdactors:first-data");
    state.lastDataAt = Date.now();
  }

  function renderAge() {
    const node = $("age");
    if (!state.lastDataAt) return;
    const age = Date.now() - state.lastDataAt;
    node.dataset.stale = String(age > STALE_AFTER_MS);
    node.textContent = `last update ${ageText(age)} ago`;
    renderSymbolAges();
  }

  // ---------------------------------------------------------------- symbols table

  const symbolRows = new Map();
  function buildSymbolTable() {
    const body = $("symbols").tBodies[0];
    for (const key of state.config.symbols) {
      state.symbols.set(key, { price: null, change: null, status: "live", reason: "", at: 0 });
      const cells = {
        name: el("td", { text: key }),
        price: el("td", { class: "num" }),
        change: el("td", { class: "num" }),
        status: el("td", { class: "status", "data-status": "live", text: "live" }),
      };
      const row = el("tr", { "data-symbol": key, "aria-selected": "false" }, Object.values(cells));
      row.addEventListener("click", () => select(key));
      body.append(row);
      symbolRows.set(key, { row, cells });
    }
  }
  function renderSymbols() {
    for (const [key, info] of state.symbols) {
      const { cells } = symbolRows.get(key);
      cells.price.textContent = fmtPrice(info.price);
      cells.change.textContent = info.change == null ? "—" : `${info.change >= 0 ? "+" : ""}${info.change.toFixed(2)} %`;
      cells.change.className = `num ${info.change > 0 ? "up" : info.change < 0 ? "down" : ""}`;
    }
    renderSymbolAges();
  }
  function renderSymbolAges() {
    const now = Date.now();
    for (const [key, info] of state.symbols) {
      const cell = symbolRows.get(key).cells.status;
      const age = info.at ? now - info.at : null;
      let text = info.status;
      if (age != null && age > STALE_AFTER_MS) text += ` · ${ageText(age)} ago`;
      cell.dataset.status = info.status;
      cell.title = info.reason || "";
      if (cell.textContent !== text) cell.textContent = text;
    }
  }

  // ---------------------------------------------------------------- SSE: prices and feed status

  const assetOf = (key) => (key.endsWith("/USD") ? key.slice(0, -4) : key); // the SSE stream's naming
  let keyOfAsset = new Map();
  let prices = null;
  function connectPrices() {
    keyOfAsset = new Map(state.config.symbols.map((key) => [assetOf(key), key]));
    const url = `/api/v1/stream/prices?assets=${encodeURIComponent(state.config.symbols.join(","))}`;
    prices = new EventSource(url);
    setConn("conn-prices", "prices", "connecting");
    prices.onopen = () => {
      setConn("conn-prices", "prices", "live");
      // A new stream reports the statuses that are not live: start from live.
      for (const info of state.symbols.values()) {
        info.status = "live";
        info.reason = "";
      }
    };
    prices.onerror = () => {
      if (prices.readyState === EventSource.CLOSED) {
        setConn("conn-prices", "prices", "reconnecting");
        setTimeout(connectPrices, 3000); // the server refused the stream: start a new one
      } else {
        setConn("conn-prices", "prices", "reconnecting");
      }
    };
    const quote = (asset, data) => {
      const info = state.symbols.get(keyOfAsset.get(asset));
      if (!info) return;
      info.price = data.price;
      info.change = data.change_percent_24h;
      info.at = Date.now();
    };
    prices.addEventListener("prices", (event) => {
      for (const [asset, data] of Object.entries(JSON.parse(event.data))) quote(asset, data);
      touch();
      invalidate("symbols");
    });
    prices.addEventListener("price", (event) => {
      const message = JSON.parse(event.data);
      quote(message.asset, message.data);
      touch();
      invalidate("symbols");
    });
    prices.addEventListener("status", (event) => {
      const message = JSON.parse(event.data);
      const info = state.symbols.get(keyOfAsset.get(message.asset));
      if (info) {
        info.status = message.status;
        info.reason = message.reason;
        invalidate("symbols");
      }
    });
    prices.addEventListener("end", () => {
      prices.close();
      setConn("conn-prices", "prices", "reconnecting", "server stopping");
      setTimeout(connectPrices, 3000);
    });
  }

  // ---------------------------------------------------------------- chart

  let chart = null;
  let candleSeries = null;
  let volumeSeries = null;
  let markersApi = null;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  function chartTheme() {
    return {
      layout: { background: { color: css("--panel") }, textColor: css("--text"), attributionLogo: true },
      grid: { vertLines: { color: css("--line") }, horzLines: { color: css("--line") } },
    };
  }
  function buildChart() {
    const LC = window.LightweightCharts;
    chart = LC.createChart($("chart"), {
      autoSize: true,
      ...chartTheme(),
      timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 8 },
      crosshair: { mode: LC.CrosshairMode.Normal },
    });
    candleSeries = chart.addSeries(LC.CandlestickSeries, {
      upColor: css("--up"), downColor: css("--down"), borderVisible: false,
      wickUpColor: css("--up"), wickDownColor: css("--down"),
    });
    candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.06, bottom: 0.26 } });
    volumeSeries = chart.addSeries(LC.HistogramSeries, {
      priceScaleId: "", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
    });
    volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    markersApi = LC.createSeriesMarkers(candleSeries, []);
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      chart.applyOptions(chartTheme());
    });
  }
  const volumeBar = (c) => ({
    time: c.time, value: c.volume, color: c.close >= c.open ? css("--up-soft") : css("--down-soft"),
  });

  let historyToken = 0;
  async function loadHistory() {
    const token = ++historyToken;
    state.historyReady = false;
    const key = state.selected;
    const url = `/api/v1/prices/${encodeURIComponent(key)}/history?interval=${state.interval}&limit=${HISTORY_LIMIT}`;
    const response = await fetch(url);
    if (!response.ok || token !== historyToken) return;
    const body = await response.json();
    const candles = body.data.map((c) => ({
      time: c.timestamp_ms / 1000, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume,
    }));
    const digits = priceDigits(candles.length ? candles[candles.length - 1].close : 1);
    candleSeries.applyOptions({ priceFormat: { type: "price", precision: digits, minMove: 10 ** -digits } });
    candleSeries.setData(candles);
    volumeSeries.setData(candles.map(volumeBar));
    state.lastCandleTime = candles.length ? candles[candles.length - 1].time : 0;
    state.firstCandleTime = candles.length ? candles[0].time : 0;
    state.historyReady = true;
    if (candles.length) showLegend(candles[candles.length - 1]);
    renderMarkers();
    invalidate("candle");
  }
  function renderCandle() {
    const c = state.candle;
    if (!c || !state.historyReady || c.time < state.lastCandleTime) return;
    candleSeries.update(c);
    volumeSeries.update(volumeBar(c));
    state.lastCandleTime = c.time;
    showLegend(c);
  }
  function showLegend(c) {
    const legend = $("legend");
    legend.textContent = `O ${fmtPrice(c.open)}  H ${fmtPrice(c.high)}  L ${fmtPrice(c.low)}  C ${fmtPrice(c.close)}  V ${fmt(c.volume, 3)}`;
    legend.dataset.close = String(c.close);
    legend.dataset.time = String(c.time);
  }
  function renderMarkers() {
    if (!markersApi) return;
    const step = INTERVAL_SECONDS[state.interval];
    const bar = (iso) => Math.floor(Date.parse(iso) / 1000 / step) * step;
    const now = Date.now();
    const markers = [];
    for (const s of state.timeline) {
      if (!s.symbols.includes(state.selected)) continue;
      const start = bar(s.started_at);
      if (start >= state.firstCandleTime) {
        markers.push({ time: start, position: "aboveBar", shape: "arrowDown", color: css("--warn"), text: s.scenario_type });
      }
      if (Date.parse(s.ends_at) <= now) {
        const end = bar(s.ends_at);
        if (end >= state.firstCandleTime && end <= state.lastCandleTime) {
          markers.push({ time: end, position: "belowBar", shape: "arrowUp", color: css("--accent"), text: "end" });
        }
      }
    }
    markers.sort((a, b) => a.time - b.time);
    markersApi.setMarkers(markers);
  }

  // ---------------------------------------------------------------- WebSocket: candles, book, trades

  let socket = null;
  let socketBackoff = 500;
  let following = null; // {symbol, channels} currently subscribed
  let requestId = 0;
  function channels() {
    return [`candles:${state.interval}`, `book:${BOOK_DEPTH}`, "trades"];
  }
  function connectSocket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.hostname}:${state.config.ws_port}/ws`);
    following = null;
    socket.onopen = () => {
      socketBackoff = 500;
      setConn("conn-ws", "chart", "live");
      follow();
      loadHistory(); // fill what was missed while down
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      for (const item of message.type === "batch" ? message.messages : [message]) onSocketMessage(item);
    };
    socket.onclose = (event) => {
      setConn("conn-ws", "chart", "reconnecting", event.code ? `closed ${event.code}` : "");
      setTimeout(connectSocket, socketBackoff);
      socketBackoff = Math.min(socketBackoff * 2, 3000);
    };
  }
  function follow() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (following) {
      socket.send(JSON.stringify({ type: "unsubscribe", id: ++requestId, symbols: [following.symbol], channels: following.channels }));
    }
    following = { symbol: state.selected, channels: channels() };
    socket.send(JSON.stringify({ type: "subscribe", id: ++requestId, symbols: [state.selected], channels: following.channels }));
  }
  function onSocketMessage(message) {
    if (message.type === "error") {
      setConn("conn-ws", "chart", "live", message.message);
      return;
    }
    if ((message.type !== "snapshot" && message.type !== "update") || message.symbol !== state.selected) return;
    touch();
    const channel = message.channel;
    if (channel === `candles:${state.interval}`) {
      const d = message.data;
      state.candle = { time: d.start / 1000, open: d.open, high: d.high, low: d.low, close: d.close, volume: d.volume };
      invalidate("candle");
    } else if (channel.startsWith("book")) {
      state.book = message.data;
      invalidate("book");
    } else if (channel === "trades") {
      const prints = message.type === "snapshot" ? message.data : [...message.data].reverse();
      state.trades = message.type === "snapshot" ? prints.slice(0, TAPE_ROWS) : [...prints, ...state.trades].slice(0, TAPE_ROWS);
      invalidate("tape");
    }
  }

  // ---------------------------------------------------------------- book and tape

  const ladder = { asks: [], bids: [], spread: null };
  function buildLadder() {
    const body = $("book").tBodies[0];
    const row = (side) => {
      const price = el("td", {}, [el("span")]);
      const size = el("td", {}, [el("span", {}), el("div", { class: "bar" })]);
      const tr = el("tr", { class: side }, [price, size]);
      body.append(tr);
      return { price: price.firstChild, size: size.firstChild, bar: size.lastChild };
    };
    for (let i = 0; i < BOOK_DEPTH; i++) ladder.asks.push(row("ask"));
    const spread = el("td", { colspan: "2" });
    body.append(el("tr", { class: "spread" }, [spread]));
    ladder.spread = spread;
    for (let i = 0; i < BOOK_DEPTH; i++) ladder.bids.push(row("bid"));
  }
  function renderBook() {
    const book = state.book;
    if (!book) return;
    const asks = book.asks.slice(0, BOOK_DEPTH);
    const bids = book.bids.slice(0, BOOK_DEPTH);
    const largest = Math.max(1e-12, ...asks.map((l) => l[1]), ...bids.map((l) => l[1]));
    const fill = (rows, levels) => {
      rows.forEach((r, i) => {
        const level = levels[i];
        r.price.textContent = level ? fmtPrice(level[0]) : "";
        r.size.textContent = level ? fmt(level[1], 4) : "";
        r.bar.style.width = level ? `${(100 * level[1]) / largest}%` : "0";
      });
    };
    fill([...ladder.asks].reverse(), asks); // best ask next to the spread
    fill(ladder.bids, bids);
    if (asks.length && bids.length) {
      const spread = asks[0][0] - bids[0][0];
      ladder.spread.textContent = `spread ${fmtPrice(spread)} · ${((spread / ((asks[0][0] + bids[0][0]) / 2)) * 1e4).toFixed(2)} bp`;
    }
  }
  const tapeRows = [];
  function buildTape() {
    const body = $("tape").tBodies[0];
    for (let i = 0; i < TAPE_ROWS; i++) {
      const cells = [el("td"), el("td"), el("td", { class: "num" }), el("td", { class: "num" })];
      const tr = el("tr", {}, cells);
      body.append(tr);
      tapeRows.push({ tr, cells });
    }
  }
  function renderTape() {
    tapeRows.forEach((r, i) => {
      const t = state.trades[i];
      r.tr.className = t ? t.side : "";
      r.cells[0].textContent = t ? new Date(Math.floor(t.ts / 1e6)).toISOString().slice(11, 23) : "";
      r.cells[1].textContent = t ? t.side : "";
      r.cells[2].textContent = t ? fmtPrice(t.price) : "";
      r.cells[3].textContent = t ? fmt(t.quantity, 4) : "";
    });
  }

  // ---------------------------------------------------------------- selection

  function buildIntervals() {
    const group = $("intervals");
    for (const name of state.config.intervals) {
      const button = el("button", { type: "button", text: name, "data-interval": name, "aria-pressed": String(name === state.interval) });
      button.addEventListener("click", () => {
        state.interval = name;
        for (const b of group.children) b.setAttribute("aria-pressed", String(b.dataset.interval === name));
        changed();
      });
      group.append(button);
    }
  }
  function select(key) {
    // A scenario form's symbol follows the chart until the operator types another.
    const symbolInput = document.querySelector('#scenario-form input[name="symbol"]');
    if (symbolInput && (symbolInput.value === "" || symbolInput.value === state.selected)) symbolInput.value = key;
    state.selected = key;
    for (const [k, { row }] of symbolRows) row.setAttribute("aria-selected", String(k === key));
    $("chart-title").textContent = key;
    changed();
  }
  function changed() {
    state.candle = null;
    state.book = null;
    state.trades = [];
    invalidate("tape");
    follow();
    loadHistory();
  }

  // ---------------------------------------------------------------- listeners, correlations

  async function pollJson(url, every, onBody, onFail) {
    for (;;) {
      try {
        const response = await fetch(url, { cache: "no-store" });
        if (response.ok) onBody(await response.json());
        else onFail(`HTTP ${response.status}`);
      } catch (error) {
        onFail(String(error));
      }
      await new Promise((resolve) => setTimeout(resolve, every));
    }
  }
  let listenersAt = 0;
  function renderListeners(body) {
    listenersAt = Date.now();
    const tbody = $("transports").tBodies[0];
    const rows = Object.entries(body.transports).map(([name, t]) =>
      el("tr", { "data-transport": name }, [
        el("td", { text: name }),
        el("td", { class: "num", text: `${t.streams}` }),
        el("td", { class: `num ${t.dropped.window ? "down" : ""}`, text: `${t.dropped.window}` }),
        el("td", { class: "num", text: `${t.dropped.total}` }),
        el("td", { class: "num", text: fmt(t.latency.window.p50_ms, 2) }),
        el("td", { class: "num", text: fmt(t.latency.window.p99_ms, 2) }),
      ]));
    tbody.replaceChildren(...rows);
    const reasons = [];
    for (const [name, t] of Object.entries(body.transports)) {
      for (const [reason, n] of Object.entries(t.dropped.reasons)) reasons.push(`${name} ${reason}: ${n.total} (${n.window} in 10 s)`);
    }
    $("drop-reasons").textContent = reasons.length ? `Drops by reason — ${reasons.join("; ")}` : "No drops.";
    const lag = body.event_loop_lag;
    $("loop-lag").textContent = `${fmt(lag.last_ms, 2)} ms now, ${fmt(lag.max_ms, 2)} ms max in ${lag.window_seconds} s`;
    $("dependencies").replaceChildren(...Object.entries(body.dependencies).map(([name, check]) =>
      el("li", { "data-status": check.status, title: JSON.stringify(check), text: `${name}: ${check.status}${check.backend ? ` (${check.backend})` : ""}` })));
  }
  function renderListenersAge() {
    const node = $("listeners-age");
    if (!listenersAt) return;
    const age = Date.now() - listenersAt;
    node.dataset.stale = String(age > STALE_AFTER_MS);
    node.textContent = `· ${ageText(age)} ago`;
  }
  function heatColor(value) {
    if (value == null) return "transparent";
    const v = Math.max(-1, Math.min(1, value));
    return v >= 0 ? `hsl(0, 75%, ${95 - 40 * v}%)` : `hsl(220, 75%, ${95 + 40 * v}%)`;
  }
  function renderCorrelations(body) {
    $("correlations-state").textContent = `· ${body.window_minutes} min to ${body.timestamp.slice(11, 19)} UTC`;
    const short = (key) => assetOf(key);
    $("heatmap").tHead.replaceChildren(el("tr", {}, [el("th"), ...body.symbols.map((k) => el("th", { text: short(k), title: k }))]));
    $("heatmap").tBodies[0].replaceChildren(...body.symbols.map((k) =>
      el("tr", {}, [el("th", { text: short(k), title: k }), ...body.symbols.map((other) => {
        const v = body.matrix[k][other];
        const cell = el("td", { text: v == null ? "—" : v.toFixed(2), title: `${k} / ${other}` });
        cell.style.background = heatColor(v);
        return cell;
      })])));
  }

  // ---------------------------------------------------------------- chaos: token, schema forms, scenarios

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  function adminFetch(url, options = {}) {
    const headers = { ...(options.headers || {}) };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    return fetch(url, { ...options, headers, cache: "no-store" });
  }
  async function errorText(response) {
    try {
      const body = await response.json();
      return { text: `${response.status} ${body.error || ""}: ${body.message || ""}`, body };
    } catch {
      return { text: `${response.status} ${response.statusText}`, body: {} };
    }
  }
  let unauthorized = false;
  async function onUnauthorized(response) {
    if (unauthorized) return;
    unauthorized = true;
    const { text } = await errorText(response);
    sessionStorage.removeItem(TOKEN_KEY);
    const alert = $("chaos-auth-error");
    alert.textContent = `Unauthorized — ${text}. Enter the admin token (ADMIN_TOKEN).`;
    alert.hidden = false;
    $("chaos-controls").hidden = true;
    $("token-form").hidden = false;
    $("token-input").focus();
  }

  function startChaos() {
    const chaos = state.config.chaos;
    if (!chaos.enabled) {
      const notice = $("chaos-unavailable");
      notice.textContent = `Chaos controls are not available: ${chaos.reason}.`;
      notice.hidden = false;
      return;
    }
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
      $("token-input").value = "";
      loadSchema();
    });
    if (chaos.token_required && !token()) {
      $("token-form").hidden = false;
      return;
    }
    loadSchema();
  }

  let schema = null;
  let chaosPolling = false;
  async function loadSchema() {
    const response = await adminFetch("/chaos/schema");
    if (response.status === 401) {
      unauthorized = false;
      return onUnauthorized(response);
    }
    if (!response.ok) {
      $("chaos-auth-error").textContent = (await errorText(response)).text;
      $("chaos-auth-error").hidden = false;
      return;
    }
    unauthorized = false;
    schema = await response.json();
    $("chaos-auth-error").hidden = true;
    $("token-form").hidden = true;
    $("chaos-controls").hidden = false;
    if (state.config.chaos.reason) {
      const notice = $("chaos-unavailable");
      notice.textContent = state.config.chaos.reason;
      notice.hidden = false;
    }
    const select = $("kind-select");
    select.replaceChildren(...schema.kinds.map((k) => el("option", { value: k.kind, text: k.title })));
    select.onchange = () => buildKindForm();
    buildKindForm();
    buildForm($("breaker-form"), schema.breaker_reset, "Reset", () => {});
    if (!chaosPolling) {
      chaosPolling = true;
      pollScenarios();
    }
  }
  function buildKindForm() {
    const kind = schema.kinds.find((k) => k.kind === $("kind-select").value);
    $("kind-description").textContent = plain(kind.body.description).replace(/^POST \S+: /, "");
    buildForm($("scenario-form"), kind, "Start", () => refreshScenarios());
  }

  // One JSON Schema property -> its input. pydantic writes optional fields as anyOf [T, null].
  function fieldSchema(prop) {
    const branch = (prop.anyOf || []).find((s) => s.type !== "null");
    return { ...(branch || {}), ...prop, anyOf: undefined };
  }
  function fieldInput(name, prop, required) {
    const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
    let input;
    if (prop.enum) {
      input = el("select", { id, name }, [el("option", { value: "", text: required ? "choose" : `default${prop.default != null ? ` (${prop.default})` : ""}` }),
        ...prop.enum.map((v) => el("option", { value: String(v), text: String(v) }))]);
    } else if (prop.type === "boolean") {
      input = el("input", { id, name, type: "checkbox" });
      input.checked = Boolean(prop.default);
    } else if (prop.type === "number" || prop.type === "integer") {
      input = el("input", { id, name, type: "number", step: "any", inputmode: "decimal" });
      for (const [bound, attr] of [["minimum", "min"], ["maximum", "max"]]) if (prop[bound] != null) input.setAttribute(attr, String(prop[bound]));
      if (prop.default != null) input.placeholder = String(prop.default);
    } else if (prop.type === "array") {
      input = el("input", { id, name, type: "text", placeholder: "comma-separated" });
    } else {
      input = el("input", { id, name, type: "text" });
      if (/symbol/.test(name)) input.setAttribute("list", "symbol-list");
      if (prop.default != null) input.placeholder = String(prop.default);
      if (name === "symbol" && required) input.value = state.selected;
    }
    input.dataset.kind = prop.enum ? "enum" : prop.type || "string";
    return { id, input };
  }
  function buildForm(form, entry, action, onDone) {
    const body = entry.body;
    const required = new Set(body.required || []);
    const main = [];
    const more = [];
    for (const [name, raw] of Object.entries(body.properties)) {
      const prop = fieldSchema(raw);
      const { id, input } = fieldInput(name, prop, required.has(name));
      const bounds = [];
      if (prop.minimum != null) bounds.push(`≥ ${prop.minimum}`);
      if (prop.exclusiveMinimum != null) bounds.push(`> ${prop.exclusiveMinimum}`);
      if (prop.maximum != null) bounds.push(`≤ ${prop.maximum}`);
      if (prop.exclusiveMaximum != null) bounds.push(`< ${prop.exclusiveMaximum}`);
      const help = [plain(prop.description), bounds.join(", ")].filter(Boolean).join(" ");
      const field = el("div", { class: "field", "data-field": name }, [
        el("label", { for: id, text: `${name}${required.has(name) ? " *" : ""}` }), input,
        ...(help ? [el("span", { class: "help", text: help })] : []),
        el("span", { class: "field-error", role: "alert", hidden: true }),
      ]);
      (required.has(name) || prop.description || prop.default != null ? main : more).push(field);
    }
    const status = el("span", { class: "form-status", role: "status" });
    const children = [...main];
    if (more.length) children.push(el("details", {}, [el("summary", { text: `${more.length} more field${more.length === 1 ? "" : "s"}` }), ...more]));
    children.push(el("div", { class: "row" }, [el("button", { type: "submit", class: "primary", text: action }), status]));
    form.replaceChildren(...children);
    form.dataset.path = entry.path;
    form.onsubmit = async (event) => {
      event.preventDefault();
      for (const e of form.querySelectorAll(".field-error")) e.hidden = true;
      for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
      const payload = {};
      for (const input of form.querySelectorAll("input, select")) {
        const kind = input.dataset.kind;
        if (kind === "boolean") payload[input.name] = input.checked;
        else if (input.value.trim() === "") continue;
        else if (kind === "number" || kind === "integer") payload[input.name] = Number(input.value);
        else if (kind === "array") payload[input.name] = input.value.split(",").map((s) => s.trim()).filter(Boolean);
        else payload[input.name] = input.value.trim();
      }
      status.textContent = "sending…";
      status.className = "form-status muted";
      const response = await adminFetch(entry.path, {
        method: entry.method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
      });
      if (response.status === 401) {
        status.textContent = "";
        return onUnauthorized(response);
      }
      if (response.ok) {
        const result = await response.json();
        status.textContent = result.id ? `started ${result.id}` : `done: ${JSON.stringify(result)}`;
        status.className = "form-status up";
        onDone(result);
        return;
      }
      const { text, body: error } = await errorText(response);
      const fieldName = String(error.field || "").split(".")[0];
      const field = fieldName && form.querySelector(`[data-field="${CSS.escape(fieldName)}"]`);
      if (field) {
        const slot = field.querySelector(".field-error");
        slot.textContent = error.message || text;
        slot.hidden = false;
        field.querySelector("input, select").setAttribute("aria-invalid", "true");
        const details = field.closest("details");
        if (details) details.open = true;
        status.textContent = `${response.status}: see ${fieldName}`;
      } else {
        status.textContent = text;
      }
      status.className = "form-status error";
    };
  }

  async function refreshScenarios() {
    const [active, timeline] = await Promise.all([
      adminFetch("/chaos/active-scenarios"), adminFetch("/debug/scenario-timeline"),
    ]);
    if (active.status === 401) return onUnauthorized(active);
    if (active.ok) {
      state.scenarios = (await active.json()).scenarios;
      renderScenarios();
    }
    if (timeline.ok) {
      const body = await timeline.json();
      state.timeline = [...body.finished, ...body.active];
      renderMarkers();
    }
  }
  async function pollScenarios() {
    for (;;) {
      if (!unauthorized) {
        try {
          await refreshScenarios();
        } catch (error) {
          $("active-empty").textContent = `cannot reach the chaos API: ${error}`;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, SCENARIOS_EVERY_MS));
    }
  }
  function renderScenarios() {
    const tbody = $("active").tBodies[0];
    tbody.replaceChildren(...state.scenarios.map((s) => {
      const stop = el("button", { type: "button", text: s.stopped ? "recovering" : "Stop", "data-stop": s.id });
      stop.disabled = s.stopped;
      stop.addEventListener("click", async () => {
        stop.disabled = true;
        const response = await adminFetch(`/chaos/stop-scenario/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        if (response.status === 401) return onUnauthorized(response);
        refreshScenarios();
      });
      const progress = el("progress", { max: "1" });
      progress.value = s.progress;
      return el("tr", { "data-scenario": s.id, "data-type": s.scenario_type }, [
        el("td", { text: s.scenario_type, title: s.id }),
        el("td", { text: s.symbols.join(", ") }),
        el("td", { text: s.phase }),
        el("td", { title: `${(s.progress * 100).toFixed(0)} %, intensity ${s.intensity}` }, [progress]),
        el("td", {}, [stop]),
      ]);
    }));
    $("active-empty").hidden = state.scenarios.length > 0;
    $("active-empty").textContent = "none";
  }

  // ---------------------------------------------------------------- start

  async function start() {
    const response = await fetch("/console/config", { cache: "no-store" });
    state.config = await response.json();
    const cfg = state.config;
    $("instance").textContent = `${cfg.instance} · v${cfg.version}`;
    document.body.append(el("datalist", { id: "symbol-list" }, cfg.symbols.map((k) => el("option", { value: k }))));
    state.selected = cfg.symbols[0];
    state.interval = cfg.intervals[0];
    buildSymbolTable();
    buildIntervals();
    buildLadder();
    buildTape();
    buildChart();
    select(state.selected);
    connectPrices();
    connectSocket();
    startChaos();
    pollJson("/api/v1/listeners", LISTENERS_EVERY_MS, renderListeners, (why) => { $("listeners-age").textContent = `· unavailable (${why})`; });
    pollJson(`/api/v1/correlations?symbols=${encodeURIComponent(cfg.symbols.join(","))}`, CORRELATIONS_EVERY_MS, renderCorrelations, (why) => { $("correlations-state").textContent = `· unavailable (${why})`; });
    setInterval(() => {
      renderAge();
      renderListenersAge();
    }, 250);
  }

  start().catch((error) => {
    $("age").textContent = `console failed to start: ${error}`;
    $("age").dataset.stale = "true";
  });
})();
