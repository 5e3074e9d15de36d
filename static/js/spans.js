/* Spans: select text in a response, tag it with an error type, list / edit / delete spans.

   Offsets are what Python counts: Unicode code points into the stored response text. The
   browser counts UTF-16 units (an emoji outside the BMP is 2), so every offset taken from a
   selection goes through toCodePoints, and every stored offset through toUtf16 before it is
   used on a JS string. The response is shown as its exact text (set from the JSON in
   #span-texts, never parsed as HTML), so offsets into the element's text are offsets into the
   stored text. */
(function () {
  "use strict";
  const Prefhub = (window.Prefhub = window.Prefhub || { kinds: {} });

  /** UTF-16 offset into `text` → code point offset (an offset inside a pair counts it). */
  function toCodePoints(text, utf16Offset) {
    return Array.from(text.slice(0, utf16Offset)).length;
  }

  /** Code point offset into `text` → UTF-16 offset. */
  function toUtf16(text, codePointOffset) {
    return Array.from(text).slice(0, codePointOffset).join("").length;
  }

  /** The code points start..end of `text`, as Python's text[start:end]. */
  function slice(text, start, end) {
    return Array.from(text).slice(start, end).join("");
  }

  // The UTF-16 offset of (node, offset) within container's text.
  function utf16OffsetIn(container, node, offset) {
    const range = document.createRange();
    range.selectNodeContents(container);
    range.setEnd(node, offset);
    return range.toString().length;
  }

  /** The current selection as {response, start, end} in code points, or null when it is
      empty or not inside one response's text. Surrounding white space is left out. */
  function selectionSpan(texts) {
    const selection = window.getSelection();
    if (!selection || !selection.rangeCount || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    const element = (node) => (node.nodeType === 1 ? node : node.parentElement).closest(".span-text");
    const box = element(range.startContainer);
    if (!box || box !== element(range.endContainer)) return null;
    const text = texts[box.dataset.response];
    let start = utf16OffsetIn(box, range.startContainer, range.startOffset);
    let end = utf16OffsetIn(box, range.endContainer, range.endOffset);
    while (start < end && /\s/.test(text[start])) start++;
    while (end > start && /\s/.test(text[end - 1])) end--;
    if (start >= end) return null;
    return { response: box.dataset.response, start: toCodePoints(text, start), end: toCodePoints(text, end) };
  }

  // Bidi controls and invisible characters, as annotate/rendering.py marks them: each goes in
  // a bidi-isolated element labelled by CSS, so the text (and every offset) stays the same.
  const BIDI = { "\u061c": "ALM", "\u200e": "LRM", "\u200f": "RLM", "\u202a": "LRE", "\u202b": "RLE",
    "\u202c": "PDF", "\u202d": "LRO", "\u202e": "RLO", "\u2066": "LRI", "\u2067": "RLI", "\u2068": "FSI", "\u2069": "PDI" };
  const CONTROL = /([\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u200b\u2060-\u2064\ufeff\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f])/;

  /** Append `text` to `parent`, each control character in its marker. */
  function appendMarked(parent, text) {
    text.split(CONTROL).forEach((part, i) => {
      if (!part) return;
      if (i % 2 === 0) { parent.append(part); return; }
      const marker = document.createElement("span");
      marker.className = "ctl";
      const code = "U+" + part.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      marker.dataset.ctl = BIDI[part] || code;
      marker.title = code;
      marker.textContent = part;
      parent.append(marker);
    });
  }

  function init(form) {
    const root = form.querySelector("[data-spans]");
    if (!root || root.dataset.ready) return;
    root.dataset.ready = "1";
    const texts = JSON.parse(document.getElementById("span-texts").textContent);
    const field = root.querySelector("[data-spans-json]");
    const list = root.querySelector("[data-span-list]");
    const empty = root.querySelector("[data-span-empty]");
    const tags = Array.from(root.querySelectorAll(".taxonomy [data-label]"));
    const labels = tags.map((t) => t.dataset.label);
    const corrections = root.dataset.allowCorrections === "true";
    const order = Array.from(root.querySelectorAll(".span-text")).map((b) => b.dataset.response);
    let spans = [];
    try { spans = JSON.parse(field.value || "[]"); } catch (e) { spans = []; }
    let pending = null;

    const status = document.createElement("p");
    status.className = "span-pending muted";
    status.dataset.testid = "span-pending";
    status.setAttribute("aria-live", "polite");
    root.querySelector(".taxonomy").after(status);

    function save() {
      spans.sort((a, b) => order.indexOf(a.response) - order.indexOf(b.response) || a.start - b.start || a.end - b.end);
      field.value = JSON.stringify(spans);
    }

    function highlight() {
      root.querySelectorAll(".span-text").forEach((box) => {
        const chars = Array.from(texts[box.dataset.response]);
        const mine = spans.map((s, i) => [s, i]).filter(([s]) => s.response === box.dataset.response);
        const cuts = new Set([0, chars.length]);
        mine.forEach(([s]) => { cuts.add(s.start); cuts.add(s.end); });
        const points = Array.from(cuts).sort((a, b) => a - b);
        box.textContent = "";
        for (let k = 0; k + 1 < points.length; k++) {
          const [a, b] = [points[k], points[k + 1]];
          const piece = chars.slice(a, b).join("");
          const over = mine.filter(([s]) => s.start <= a && s.end >= b);
          if (!over.length) { appendMarked(box, piece); continue; }
          const mark = document.createElement("mark");
          appendMarked(mark, piece);
          mark.className = `span-mark tag-${labels.indexOf(over[0][0].label)}${over.length > 1 ? " overlap" : ""}`;
          mark.dataset.spans = over.map(([, i]) => i).join(" ");
          mark.title = over.map(([s]) => s.label).join(", ");
          box.append(mark);
        }
      });
    }

    function option(name, selected) {
      const o = document.createElement("option");
      o.value = o.textContent = name;
      o.selected = name === selected;
      return o;
    }

    function renderList() {
      list.textContent = "";
      spans.forEach((span, i) => {
        const li = document.createElement("li");
        li.dataset.testid = "span-item";
        li.dataset.index = String(i);
        li.tabIndex = 0;
        li.setAttribute("aria-label", `Span ${i + 1}: ${span.label} (Delete removes it)`);
        const quote = document.createElement("q");
        quote.className = `span-quote tag-${labels.indexOf(span.label)}`;
        const words = slice(texts[span.response], span.start, span.end);
        quote.textContent = words.length > 80 ? words.slice(0, 77) + "…" : words;
        const letter = root.querySelector(`.span-text[data-response="${CSS.escape(span.response)}"]`).dataset.letter;
        const where = document.createElement("small");
        where.className = "muted";
        where.textContent = ` in ${letter}, characters ${span.start}–${span.end} `;
        const select = document.createElement("select");
        select.dataset.testid = `span-label-${i}`;
        select.setAttribute("aria-label", "Error type");
        labels.forEach((name) => select.append(option(name, span.label)));
        select.addEventListener("change", () => { span.label = select.value; save(); highlight(); quote.className = `span-quote tag-${labels.indexOf(span.label)}`; });
        li.append(quote, where, select);
        if (corrections) {
          const input = document.createElement("input");
          input.type = "text";
          input.placeholder = "Correction (optional)";
          input.value = span.correction || "";
          input.dataset.testid = `span-correction-${i}`;
          input.setAttribute("aria-label", "Correction");
          input.addEventListener("input", () => { span.correction = input.value || null; save(); });
          li.append(" ", input);
        }
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "danger";
        remove.textContent = "Delete";
        remove.dataset.testid = `span-delete-${i}`;
        remove.addEventListener("click", () => removeSpan(i));
        li.append(" ", remove);
        list.append(li);
      });
      empty.hidden = spans.length > 0;
    }

    function render() { save(); highlight(); renderList(); }

    function removeSpan(i) {
      spans.splice(i, 1);
      render();
      const next = list.children[Math.min(i, spans.length - 1)];
      (next || root.querySelector(".span-text")).focus();
    }

    function addSpan(label) {
      if (!pending) { status.textContent = "Select some text in a response first."; return false; }
      const text = texts[pending.response];
      const span = { ...pending, label, correction: null, text: slice(text, pending.start, pending.end) };
      const same = spans.findIndex((s) => s.response === span.response && s.start === span.start && s.end === span.end);
      if (same >= 0) spans[same].label = label; else spans.push(span);
      pending = null;
      window.getSelection().removeAllRanges();
      render();
      status.textContent = `Marked “${span.text}” as ${label}.`;
      return true;
    }

    function notePending() {
      pending = selectionSpan(texts);
      root.classList.toggle("armed", !!pending);
      status.textContent = pending
        ? `Selected “${slice(texts[pending.response], pending.start, pending.end)}”: press an error type's key or button.`
        : "";
    }

    root.querySelectorAll(".span-text").forEach((box) => { box.tabIndex = 0; });
    root.addEventListener("mouseup", (e) => { if (e.target.closest(".span-text")) notePending(); });
    root.addEventListener("keyup", (e) => { if (e.target.closest(".span-text") || e.shiftKey) notePending(); });
    // Buttons keep the selection: pressing one must not collapse it before the click.
    tags.forEach((tag) => {
      tag.addEventListener("mousedown", (e) => e.preventDefault());
      tag.addEventListener("click", () => {
        if (!pending) notePending();
        addSpan(tag.dataset.label);
      });
    });
    root.addEventListener("click", (e) => {
      const mark = e.target.closest("mark[data-spans]");
      if (!mark || !window.getSelection().isCollapsed) return;
      const item = list.children[Number(mark.dataset.spans.split(" ")[0])];
      if (item) item.focus();
    });

    form._spans = {
      onKey(event) {
        if (event.key === "N") {
          form.querySelector('[data-testid="no-errors"]').click();
          return true;
        }
        if (event.key === "Delete" || event.key === "Backspace") {
          const item = document.activeElement && document.activeElement.closest("[data-span-list] > li");
          if (item) { removeSpan(Number(item.dataset.index)); return true; }
          return false;
        }
        const tag = tags.find((t) => t.dataset.hotkey && t.dataset.hotkey === event.key);
        if (tag && (pending || (notePending(), pending))) return addSpan(tag.dataset.label);
        return false;
      },
    };
    render();
  }

  Prefhub.kinds.spans = {
    init,
    onKey(event, form) { return form._spans ? form._spans.onKey(event) : false; },
  };
  window.PrefhubSpans = { toCodePoints, toUtf16, slice, selectionSpan };
})();
