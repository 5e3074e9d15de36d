/* Spans: select text in a response, tag it with an error type, list / edit / delete spans.

   Offsets are what Python counts: Unicode code points into the stored response text. The
   response is shown rendered (annotate/rendering.py's HTML): sourceMap() aligns each rendered
   text node with the stored text (JSON in #span-texts), character by character in order, so a
   selection on what the annotator reads maps back to exact code points of what is stored.
   Rendered characters that are not in the source (an image's placeholder, a note) map to none.
   A mouse selection snaps out to whole words (hold Alt to keep it as it is). The browser counts
   UTF-16 units (an emoji outside the BMP is 2): toCodePoints / toUtf16 convert. */
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

  // How far ahead of the last matched character the next one is looked for: past a link's URL,
  // a reference definition or markup, not through the whole text for a character it lacks.
  const WINDOW = 4096;

  /** The rendered box's text nodes, each with the source code point of each of its UTF-16
      units (-1: none). Whitespace-only nodes between blocks and generated words are left out. */
  function sourceMap(box, source) {
    const chars = Array.from(source);
    const nodes = [];
    const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
    let at = 0;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const map = new Int32Array(node.data.length).fill(-1);
      nodes.push({ node, map });
      const parent = node.parentElement;
      if (parent.closest(".image-blocked, .render-note, summary")) continue;
      if (!/\S/.test(node.data) && !parent.closest("pre")) continue;
      let unit = 0;
      for (const ch of node.data) {
        const limit = Math.min(chars.length, at + WINDOW);
        let found = -1;
        for (let k = at; k < limit; k++) if (chars[k] === ch) { found = k; break; }
        if (found >= 0) {
          map.fill(found, unit, unit + ch.length);
          at = found + 1;
        }
        unit += ch.length;
      }
    }
    return nodes;
  }

  /** Source code points [start, end) of what `range` selects in the mapped nodes, white space
      at either end left out; null when nothing mapped is selected. */
  function rangeToSource(range, nodes, source) {
    const chars = Array.from(source);
    let start = Infinity, end = -1;
    for (const { node, map } of nodes) {
      if (!range.intersectsNode(node)) continue;
      const from = node === range.startContainer ? range.startOffset : 0;
      const to = node === range.endContainer ? range.endOffset : node.data.length;
      for (let k = from; k < to; k++) {
        const at = map[k];
        if (at < 0 || /\s/.test(chars[at])) continue;
        if (at < start) start = at;
        if (at > end) end = at;
      }
    }
    return end < 0 ? null : { start, end: end + 1 };
  }

  /** [start, end) grown to whole words where either end falls inside one (Intl.Segmenter's
      words: CJK by dictionary, emoji and punctuation are not words). */
  function snapToWords(source, start, end) {
    const words = new Intl.Segmenter(undefined, { granularity: "word" }).segment(source);
    const a = words.containing(toUtf16(source, start));
    const b = words.containing(toUtf16(source, end) - 1);
    const from = a && a.isWordLike ? a.index : toUtf16(source, start);
    const to = b && b.isWordLike ? b.index + b.segment.length : toUtf16(source, end);
    return { start: toCodePoints(source, from), end: toCodePoints(source, to) };
  }

  /** The current selection as {response, start, end} in code points, or null when it is
      empty or not inside one response's text. `maps`: response id → sourceMap. */
  function selectionSpan(texts, maps, snap) {
    const selection = window.getSelection();
    if (!selection || !selection.rangeCount || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    const element = (node) => (node.nodeType === 1 ? node : node.parentElement).closest(".span-text");
    const box = element(range.startContainer);
    if (!box || box !== element(range.endContainer)) return null;
    const rid = box.dataset.response;
    let span = rangeToSource(range, maps[rid], texts[rid]);
    if (!span) return null;
    if (snap) span = snapToWords(texts[rid], span.start, span.end);
    return { response: rid, start: span.start, end: span.end };
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
    // Each response's rendered HTML as the server sent it; the marks are redrawn on a copy.
    const pristine = {};
    const maps = {};
    root.querySelectorAll(".span-text").forEach((box) => { pristine[box.dataset.response] = box.cloneNode(true); });
    let snap = true;

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
        const rid = box.dataset.response;
        box.replaceChildren(...pristine[rid].cloneNode(true).childNodes);
        const mine = spans.map((s, i) => [s, i]).filter(([s]) => s.response === rid);
        if (mine.length) sourceMap(box, texts[rid]).forEach(({ node, map }) => markNode(node, map, mine));
        // Marks split text nodes without changing the text: the map is made again on them.
        maps[rid] = sourceMap(box, texts[rid]);
      });
    }

    // A text node cut where the spans that cover its characters change; covered pieces in <mark>.
    function markNode(node, map, mine) {
      const cover = (k) => (map[k] < 0 ? [] : mine.filter(([s]) => s.start <= map[k] && map[k] < s.end));
      const pieces = [];
      let from = 0, key = cover(0).map(([, i]) => i).join(" ");
      for (let k = 1; k <= node.data.length; k++) {
        const next = k < node.data.length ? cover(k).map(([, i]) => i).join(" ") : null;
        if (next !== key) { pieces.push([from, k, key]); from = k; key = next; }
      }
      if (pieces.every(([, , covered]) => !covered)) return;
      const fragment = document.createDocumentFragment();
      for (const [a, b, covered] of pieces) {
        const text = node.data.slice(a, b);
        if (!covered) { fragment.append(text); continue; }
        const over = covered.split(" ").map((i) => spans[Number(i)]);
        const mark = document.createElement("mark");
        mark.textContent = text;
        mark.className = `span-mark tag-${labels.indexOf(over[0].label)}${over.length > 1 ? " overlap" : ""}`;
        mark.dataset.spans = covered;
        mark.title = over.map((s) => s.label).join(", ");
        fragment.append(mark);
      }
      node.replaceWith(fragment);
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
        where.textContent = ` in ${letter} `;
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
      pending = selectionSpan(texts, maps, snap);
      root.classList.toggle("armed", !!pending);
      status.textContent = pending
        ? `Selected “${slice(texts[pending.response], pending.start, pending.end)}”: press an error type's key or button.`
        : "";
    }

    root.querySelectorAll(".span-text").forEach((box) => { box.tabIndex = 0; });
    // The mouse selects roughly: snapped to words, unless Alt is held. Keys select exactly.
    root.addEventListener("mouseup", (e) => {
      if (!e.target.closest(".span-text")) return;
      snap = !e.altKey;
      notePending();
    });
    root.addEventListener("keyup", (e) => {
      if (!e.target.closest(".span-text") && !e.shiftKey) return;
      snap = false;
      notePending();
    });
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
  window.PrefhubSpans = { toCodePoints, toUtf16, slice, selectionSpan, sourceMap };
})();
