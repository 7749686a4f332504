/* RANA dashboards: draw each <canvas data-chart-url> from its JSON (django-chartjs views)
   with Chart.js 4, redraw after every htmx swap, keep the viewer's timezone in a cookie.
   Axis text and grid lines take the page's --muted and --line colours (light or dark, as the
   system says) and follow a change of the system's scheme without a reload. */
(function () {
  "use strict";

  const TZ_COOKIE = "rana_tz";
  const DARK = window.matchMedia("(prefers-color-scheme: dark)");

  function ink() {
    const style = getComputedStyle(document.documentElement);
    const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    return { text: read("--muted", "#5d6b7a"), grid: read("--line", "#e6e9ee") };
  }

  function applyInk(options, colours) {
    Object.values(options.scales || {}).forEach((scale) => {
      if (scale.ticks) scale.ticks.color = colours.text;
      if (scale.grid && scale.grid.display !== false) scale.grid.color = colours.grid;
    });
    options.plugins.legend.labels.color = colours.text;
  }

  function rememberTimezone() {
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!tz) return false;
    const current = document.cookie.split("; ").find((c) => c.startsWith(TZ_COOKIE + "="));
    if (current && decodeURIComponent(current.split("=")[1]) === tz) return false;
    document.cookie = `${TZ_COOKIE}=${encodeURIComponent(tz)}; path=/; max-age=31536000; SameSite=Lax`; // read with unquote()
    const root = document.querySelector("[data-dashboard-tz]");
    const pinned = new URLSearchParams(location.search).has("tz");
    return Boolean(root && !pinned && root.dataset.dashboardTz !== tz);
  }

  const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 2 });
  const smallMoney = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 });
  const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function formatter(unit, short) {
    switch (unit) {
      case "usd": return (v) => (Math.abs(v) >= 1 || v === 0 ? money : smallMoney).format(v);
      case "%": return (v) => `${count.format(v)}%`;
      case "ms": return (v) => (v >= (short ? 1000 : 10000) ? `${count.format(v / 1000)} s` : `${Math.round(v).toLocaleString()} ms`);
      case "s": return (v) => `${count.format(v)} s`;
      case "min": return (v) => `${count.format(v)} min`;
      case "h": return (v) => `${count.format(v)} h`;
      default: return (v) => (short ? compact : count).format(v);
    }
  }

  // Lines draw no points, except a value with no neighbour: it would otherwise be invisible.
  function isolatedPoint(ctx) {
    const data = ctx.dataset.data;
    const i = ctx.dataIndex;
    if (data[i] === null || data[i] === undefined) return 0;
    const missing = (j) => j < 0 || j >= data.length || data[j] === null || data[j] === undefined;
    return missing(i - 1) && missing(i + 1) ? 3 : 0;
  }

  // The request log for one bar or point: the chart's log URL with the point's filters (its
  // time slot or category), then the series' (outcome, provider ...) when a bar was hit.
  function logUrl(log, index, datasetIndex) {
    if (!log || !log.points || !log.points[index]) return null;
    const url = new URL(log.url, window.location.origin);
    const series = datasetIndex === null ? {} : log.series[datasetIndex] || {};
    Object.entries({ ...log.points[index], ...series }).forEach(([k, v]) => url.searchParams.set(k, v));
    return url.pathname + url.search;
  }

  function clickedUrl(chart, event, log) {
    const hit = chart.getElementsAtEventForMode(event, "nearest", { intersect: true }, false)[0];
    if (hit) return logUrl(log, hit.index, hit.datasetIndex);
    const near = chart.getElementsAtEventForMode(event, "index", { intersect: false }, false)[0];
    return near ? logUrl(log, near.index, null) : null;
  }

  function config(payload) {
    const valueAxis = payload.horizontal ? "x" : "y";
    const categoryAxis = payload.horizontal ? "y" : "x";
    const short = formatter(payload.unit, true);
    const full = formatter(payload.unit, false);
    const scales = {
      [valueAxis]: {
        stacked: payload.stacked, beginAtZero: true,
        max: payload.unit === "%" && payload.stacked && payload.name === "funnel" ? 100 : undefined,
        grid: {}, ticks: { callback: (v) => short(v), maxTicksLimit: 6 },
      },
      [categoryAxis]: {
        stacked: payload.stacked, grid: { display: false },
        ticks: { autoSkip: true, maxRotation: 0, maxTicksLimit: payload.horizontal ? 30 : 12 },
      },
    };
    if (payload.datasets.some((d) => d.yAxisID === "y1")) {
      scales.y1 = {
        position: "right", grid: { drawOnChartArea: false },
        ticks: { callback: (v) => short(v), maxTicksLimit: 6 },
        suggestedMax: payload.unit === "%" ? 100 : undefined,
      };
    }
    if (payload.type === "bar") payload.datasets.forEach((d) => { d.maxBarThickness = 28; });
    if (payload.type === "line") payload.datasets.forEach((d) => { d.pointRadius = isolatedPoint; });
    const options = {
      responsive: true, maintainAspectRatio: false, animation: { duration: 250 },
      indexAxis: payload.horizontal ? "y" : "x",
      interaction: { mode: "index", intersect: false },
      onClick: (event, _elements, chart) => {
        const url = clickedUrl(chart, event, payload.log);
        if (url) window.location.assign(url);
      },
      onHover: (event, elements, chart) => {
        chart.canvas.style.cursor = payload.log && elements.length ? "pointer" : "";
      },
      scales,
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.raw === null ? "—" : full(c.raw)}` } },
      },
    };
    applyInk(options, ink());
    return { type: payload.type, data: { labels: payload.labels, datasets: payload.datasets }, options };
  }

  function restyleAll() {
    const colours = ink();
    document.querySelectorAll("canvas[data-chart-url]").forEach((canvas) => {
      const chart = window.Chart.getChart(canvas);
      if (!chart) return;
      applyInk(chart.options, colours);
      chart.update("none");
      canvas.dataset.ink = colours.text;
    });
  }

  function draw(canvas) {
    if (canvas.dataset.requested) return; // htmx's load event and init() may both see it
    canvas.dataset.requested = "1";
    const box = canvas.closest(".chart-box");
    const card = canvas.closest(".chart");
    box.classList.add("is-loading");
    fetch(canvas.dataset.chartUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return response.json();
      })
      .then((payload) => {
        if (!canvas.isConnected) return;
        const old = window.Chart.getChart(canvas);
        if (old) old.destroy();
        box.classList.remove("is-loading", "is-failed");
        box.classList.toggle("is-empty", payload.empty);
        const note = card && card.querySelector("[data-chart-note]");
        if (note) note.textContent = payload.note || "";
        if (!payload.empty) {
          const drawn = config(payload);
          new window.Chart(canvas, drawn);
          canvas.dataset.ink = drawn.options.plugins.legend.labels.color;
        }
        canvas.dataset.rendered = String(Date.now());
        canvas.dispatchEvent(new CustomEvent("rana:chart-drawn", { bubbles: true, detail: payload }));
      })
      .catch((error) => {
        box.classList.remove("is-loading");
        box.classList.add("is-failed");
        box.querySelector(".chart-empty").textContent = `Could not load this chart (${error.message}).`;
      });
  }

  function toggleCustom(form) {
    const range = form.querySelector("select[name=range]");
    form.classList.toggle("is-custom", range && range.value === "custom");
  }

  function init() {
    const refresh = rememberTimezone();
    document.querySelectorAll("[data-dashboard-filters]").forEach(toggleCustom);
    // Delegated: Back and Forward swap in a new form (the page is reloaded from the server).
    document.body.addEventListener("change", (event) => {
      const form = event.target.closest("[data-dashboard-filters]");
      if (form) toggleCustom(form);
    });
    DARK.addEventListener("change", restyleAll);
    window.htmx.onLoad((element) => {
      element.querySelectorAll("canvas[data-chart-url]").forEach(draw);
    });
    document.querySelectorAll("canvas[data-chart-url]").forEach(draw);
    // Back/Forward: the old page's charts go with it; the restored page's are drawn afresh.
    document.body.addEventListener("htmx:historyCacheMissLoad", () => {
      document.querySelectorAll("canvas").forEach((canvas) => {
        const chart = window.Chart.getChart(canvas);
        if (chart) chart.destroy();
      });
    });
    document.body.addEventListener("htmx:historyRestore", () => {
      document.querySelectorAll("[data-dashboard-filters]").forEach(toggleCustom);
      document.querySelectorAll("canvas[data-chart-url]").forEach(draw);
    });
    document.body.addEventListener("htmx:beforeSwap", (event) => {
      event.detail.target.querySelectorAll("canvas").forEach((canvas) => {
        const chart = window.Chart.getChart(canvas);
        if (chart) chart.destroy();
      });
    });
    if (refresh && document.getElementById("dashboard-body")) {
      window.htmx.ajax("GET", location.href, { target: "#dashboard-body", swap: "outerHTML" });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
