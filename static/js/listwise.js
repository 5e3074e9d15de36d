/* Listwise: order the response cards best first by drag and drop or keyboard.
   The cards' rank inputs (rank-<id>, what the form posts) follow the order; a card tied with
   the one above shares its rank. Without JS, people type the ranks themselves. */
(function () {
  "use strict";
  const Prefhub = (window.Prefhub = window.Prefhub || { kinds: {} });

  function cards(list) {
    return Array.from(list.querySelectorAll(":scope > .rank-card"));
  }

  function sync(list) {
    let rank = 0;
    cards(list).forEach((card, index) => {
      const tie = card.querySelector("[data-tie]");
      if (tie) {
        tie.disabled = index === 0;
        if (index === 0) tie.checked = false;
      }
      const tied = !!(tie && tie.checked);
      rank = tied ? rank : rank + 1;
      card.classList.toggle("tied", tied);
      card.querySelector('input[type="number"]').value = String(rank);
      card.setAttribute("aria-label", `Response ${card.dataset.letter}, rank ${rank}${tied ? " (tied)" : ""}`);
    });
  }

  function moveTo(list, card, position) {
    const all = cards(list).filter((c) => c !== card);
    position = Math.max(0, Math.min(position, all.length));
    const tie = card.querySelector("[data-tie]");
    if (tie) tie.checked = false;
    list.insertBefore(card, all[position] || null);
    sync(list);
    card.focus();
    announce(list, card);
  }

  function announce(list, card) {
    const live = list.parentElement.querySelector("[data-rank-live]");
    if (live) live.textContent = card.getAttribute("aria-label");
  }

  // Keys that a card's letter must not take: guidelines, moves, ties, "this order is right".
  const TAKEN = new Set(["g", "j", "k", "t", "o"]);

  function onKey(event, form) {
    const list = form.querySelector("[data-rank-list]");
    if (!list) return false;
    if (event.key === "o") {
      const confirm = form.querySelector("[data-order-confirmed]");
      confirm.checked = !confirm.checked;
      return true;
    }
    // A letter focuses that response's card (when the focus is not on a card's own keys).
    if (/^[a-z]$/.test(event.key) && !TAKEN.has(event.key)) {
      const card = cards(list).find((c) => c.dataset.letter === event.key.toUpperCase());
      if (card) { card.focus(); return true; }
    }
    return onCardKey(event);
  }

  function onCardKey(event) {
    const card = event.target;
    if (!card.classList || !card.classList.contains("rank-card")) return false;
    const list = card.parentElement;
    const index = cards(list).indexOf(card);
    const key = event.key;
    if (key === "ArrowUp" || key === "k") moveTo(list, card, index - 1);
    else if (key === "ArrowDown" || key === "j") moveTo(list, card, index + 1);
    else if (/^[1-9]$/.test(key)) moveTo(list, card, Number(key) - 1);
    else if (key === "t" && list.dataset.allowTies === "true" && index > 0) {
      const tie = card.querySelector("[data-tie]");
      tie.checked = !tie.checked;
      sync(list);
      announce(list, card);
    } else return false;
    return true;
  }

  function dragAfter(list, y) {
    // The first card whose middle is below the pointer: the dragged card goes before it.
    return cards(list).filter((c) => !c.classList.contains("dragging"))
      .find((c) => { const box = c.getBoundingClientRect(); return y < box.top + box.height / 2; });
  }

  function init(form) {
    const list = form.querySelector("[data-rank-list]");
    if (!list || list.dataset.ready) return;
    list.dataset.ready = "1";
    const live = document.createElement("p");
    live.className = "visually-hidden";
    live.setAttribute("aria-live", "polite");
    live.dataset.rankLive = "";
    list.after(live);
    let dragged = null;
    cards(list).forEach((card) => { card.draggable = true; });
    list.addEventListener("dragstart", (event) => {
      dragged = event.target.closest(".rank-card");
      if (!dragged) return;
      dragged.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragged.dataset.response);
    });
    list.addEventListener("dragover", (event) => {
      if (!dragged) return;
      event.preventDefault();
      const after = dragAfter(list, event.clientY);
      if (after !== dragged.nextElementSibling || !after) list.insertBefore(dragged, after || null);
    });
    list.addEventListener("drop", (event) => event.preventDefault());
    list.addEventListener("dragend", () => {
      if (!dragged) return;
      dragged.classList.remove("dragging");
      const tie = dragged.querySelector("[data-tie]");
      if (tie) tie.checked = false;
      sync(list);
      announce(list, dragged);
      dragged = null;
    });
    list.addEventListener("change", (event) => {
      const card = event.target.closest(".rank-card");
      if (!card) return;
      if (event.target.matches('input[type="number"]')) {
        const rank = parseInt(event.target.value, 10);
        if (rank >= 1) moveTo(list, card, rank - 1);
        else sync(list);
      } else if (event.target.matches("[data-tie]")) sync(list);
    });
    sync(list);
  }

  Prefhub.kinds.listwise = { init, onKey, sync, moveTo };
})();
