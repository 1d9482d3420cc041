// Run dashboard (templates/jobs/dashboard.html): draws a job's curves with Chart.js 4 from
// dashboard.json and, while the job is queued or running, fetches it again every 5 s and
// updates the charts and flag tables in place. Text from the server goes in with textContent.
(function () {
  "use strict";

  const REFRESH_MS = 5000;
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#656d76"];

  const root = document.getElementById("dashboard");
  if (!root) return;
  const charts = new Map(); // chart id -> Chart
  let live = root.dataset.live === "true";

  function show(id, visible) {
    const element = document.getElementById(id);
    if (element) element.hidden = !visible;
  }

  function fail(message) {
    const element = document.getElementById("dashboard-error");
    element.textContent = message;
    element.hidden = false;
  }

  function datasetsFor(spec, byKey, xs) {
    return spec.series.map((key, i) => {
      const series = byKey.get(key);
      const color = COLORS[i % COLORS.length];
      return {
        label: series.label,
        data: xs.map((x, j) => ({ x: x, y: series.values[j] })),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        borderDash: series.dashed ? [4, 4] : [], // a confidence bound, not a measurement
        pointRadius: series.sparse ? 3 : xs.length > 40 ? 0 : 2,
        spanGaps: true, // a step without rollouts (or without trainer figures) is a gap, not a drop to 0
      };
    });
  }

  function newChart(spec, xLabel, datasets) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = "chart-" + spec.id;
    const caption = document.createElement("figcaption");
    caption.textContent = spec.title;
    const box = document.createElement("div");
    box.className = "chart-box";
    const canvas = document.createElement("canvas");
    box.appendChild(canvas);
    figure.append(caption, box);
    document.getElementById("dashboard-charts").appendChild(figure);
    return new window.Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: {
          x: { type: "linear", title: { display: true, text: xLabel }, ticks: { precision: 0 } },
          y: spec.share ? { min: 0, max: 1 } : { beginAtZero: false },
        },
      },
    });
  }

  function drawCharts(data) {
    const byKey = new Map(data.series.map((s) => [s.key, s]));
    const xs = data.x.values;
    for (const spec of data.charts) {
      const datasets = datasetsFor(spec, byKey, xs);
      const chart = charts.get(spec.id);
      if (!chart) {
        charts.set(spec.id, newChart(spec, data.x.label, datasets));
        continue;
      }
      const sameSeries = chart.data.datasets.length === datasets.length &&
        chart.data.datasets.every((d, i) => d.label === datasets[i].label);
      if (sameSeries) {
        // Swap only the points, so a series hidden from the legend stays hidden.
        chart.data.datasets.forEach((d, i) => { d.data = datasets[i].data; d.pointRadius = datasets[i].pointRadius; });
      } else {
        chart.data.datasets = datasets;
      }
      chart.options.scales.x.title.text = data.x.label;
      chart.update("none");
    }
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function emptyRow(table, text) {
    const tr = document.createElement("tr");
    const td = cell(text, "muted");
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.appendChild(td);
    return tr;
  }

  function drawFlags(flags, xLabel) {
    document.getElementById("flags-rule").textContent = flags.rule;
    document.getElementById("flags-x-label").textContent = xLabel;
    const table = document.getElementById("flags-table");
    const rows = flags.rows.map((row) => {
      const tr = document.createElement("tr");
      tr.append(cell(row.x, "num"), cell(row.high_reward, "num"), ...row.counts.map((n) => cell(n, "num")));
      return tr;
    });
    table.tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(table, "No high-reward rollout has a suspicious shape.")]));
    document.getElementById("flags-more").textContent =
      "The newest " + flags.rows.length + " of " + flags.rows_total + " steps with flags; the CSV has them all.";
    show("flags-more", flags.rows_total > flags.rows.length);

    const list = document.getElementById("flagged-list");
    const items = flags.recent.map((r) => {
      const tr = document.createElement("tr");
      const idCell = cell("", "num");
      const link = document.createElement("a");
      link.href = r.url;
      link.textContent = r.id;
      idCell.appendChild(link);
      const labels = cell("");
      for (const label of r.flags) {
        const tag = document.createElement("span");
        tag.className = "flag-tag";
        tag.textContent = label;
        labels.appendChild(tag);
      }
      tr.append(idCell, cell(r.step, "num"), cell(r.reward === null ? "—" : r.reward.toFixed(3), "num"), labels,
        cell(r.answer, "answer"));
      return tr;
    });
    list.tBodies[0].replaceChildren(...(items.length ? items : [emptyRow(list, "None.")]));
  }

  function drawStatus(data) {
    const status = document.getElementById("dashboard-status");
    status.textContent = data.job.status;
    status.className = "status " + data.job.status;
    status.dataset.status = data.job.status;
    document.getElementById("dashboard-count").textContent = data.rollouts;
  }

  function draw(data) {
    drawStatus(data);
    show("dashboard-empty", data.rollouts === 0);
    show("dashboard-error", false);
    drawCharts(data);
    drawFlags(data.flags, data.x.label);
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.url, { headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null); // a login page after a lost session is not JSON
      if (body === null) throw new Error("the answer was not JSON (logged out?)");
      if (!response.ok) throw new Error(body.error || "the server answered " + response.status);
      live = body.job.live;
      draw(body);
    } catch (err) {
      fail("Could not load the dashboard data: " + err.message + (live ? " (trying again)" : ""));
    }
    if (live) window.setTimeout(refresh, REFRESH_MS);
  }

  if (typeof window.Chart !== "function") {
    fail("Chart.js did not load, so the charts cannot be drawn; the CSV and JSON downloads still work.");
    return;
  }
  refresh();
})();
