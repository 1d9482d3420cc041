// Typeset the math spans that apps/rollouts/rendering.py leaves in rendered model output.
// Broken LaTeX shows KaTeX's error inline instead of throwing; \href and friends stay off (trust: false).
function typesetMath(root) {
  if (!window.katex) return;
  root.querySelectorAll(".math:not([data-typeset])").forEach(function (el) {
    el.setAttribute("data-typeset", "");
    katex.render(el.textContent, el, {
      displayMode: !el.classList.contains("inline"),
      throwOnError: false,
      trust: false,
      maxExpand: 200,
    });
  });
}
document.addEventListener("DOMContentLoaded", function () { typesetMath(document); });
document.addEventListener("htmx:afterSwap", function (event) { typesetMath(event.target); });
