/* Math in rendered Markdown. annotate/rendering.py keeps it exactly as written, delimiters
   included, in .math elements; here the vendored KaTeX typesets it, with the source as the
   element's title (the "Raw text" toggle shows it too). katex.render builds DOM nodes and sets
   their styles through CSSOM, which the Content-Security-Policy allows. The span view is left
   as written: spans are marked on the text itself. */
(function () {
  "use strict";
  // [open, close]: what rendering.py's _math writes around the TeX.
  const DELIMITERS = [["$$", "$$"], ["\\[", "\\]"], ["\\(", "\\)"], ["$", "$"]];

  function typeset(root) {
    if (!window.katex || !root.querySelectorAll) return;
    root.querySelectorAll(".prose .math:not([data-typeset])").forEach((el) => {
      if (el.closest(".span-text")) return;
      const source = el.textContent;
      const pair = DELIMITERS.find(([open, close]) =>
        source.length >= open.length + close.length && source.startsWith(open) && source.endsWith(close));
      if (!pair) return;
      const tex = source.slice(pair[0].length, source.length - pair[1].length);
      el.dataset.typeset = "1";
      el.title = source;
      try {
        window.katex.render(tex, el, { displayMode: el.tagName === "DIV", throwOnError: false, maxSize: 20, maxExpand: 200 });
      } catch (error) {
        el.textContent = source;
      }
    });
  }

  if (window.htmx) window.htmx.onLoad(typeset);
  else document.addEventListener("DOMContentLoaded", () => typeset(document.body));
})();
