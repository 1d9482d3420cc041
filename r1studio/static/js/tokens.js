// The token lens (apps/rollouts/tokens.py): a token's values as its title, made when the pointer first
// reaches it. Each `.tokens[data-trace]` box names the JSON document (json_script) holding its tokens'
// log-probabilities, entropies, top alternatives and labels; `start` is the box's first token index.
(function () {
  "use strict";
  const parsed = new WeakMap();

  function dataOf(box) {
    if (!parsed.has(box)) {
      const script = document.getElementById(box.dataset.trace);
      parsed.set(box, script ? JSON.parse(script.textContent) : null);
    }
    return parsed.get(box);
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "—" : value.toFixed(digits);
  }

  function probability(logprob) {
    if (logprob === null) return "—";
    const p = Math.exp(logprob);
    return p >= 0.001 ? p.toFixed(3) : p.toExponential(1);
  }

  function describe(data, offset) {
    const index = data.start + offset;
    const lines = [`#${index} ${data.labels[data.ids[offset]]}  log-prob ${fixed(data.lp[offset], 3)} (p ${probability(data.lp[offset])})`];
    if (data.e) lines.push(`entropy ${fixed(data.e[offset], 3)}`);
    if (data.top) {
      const alternatives = [];
      data.top[offset].forEach((id, k) => {
        if (id >= 0) alternatives.push(`${data.labels[id]} ${fixed(data.tlp[offset][k], 2)}`);
      });
      lines.push(`top: ${alternatives.join(", ")}`);
    }
    return lines.join("\n");
  }

  document.addEventListener("mouseover", (event) => {
    const span = event.target.closest && event.target.closest(".tokens[data-trace] > .t");
    if (!span || span.title) return;
    const box = span.parentElement;
    const data = dataOf(box);
    if (!data) return;
    span.title = describe(data, Array.prototype.indexOf.call(box.children, span));
  });
})();
