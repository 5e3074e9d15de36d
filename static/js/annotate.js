/* The annotate page: time spent, keyboard shortcuts, pairwise and ratings keys.
   Kind modules (listwise.js, spans.js) register in window.Prefhub.kinds with init(form) and
   onKey(event, form) -> true when they handled the key. Everything here works on the #work
   element, which htmx replaces after every submit. */
(function () {
  "use strict";
  const Prefhub = (window.Prefhub = window.Prefhub || { kinds: {} });
  document.documentElement.classList.add("js");

  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) &&
      !(el.tagName === "INPUT" && /^(radio|checkbox)$/.test(el.type));
  }

  function currentForm() {
    return document.getElementById("annotate-form");
  }

  function init(root) {
    const form = root.querySelector ? (root.id === "annotate-form" ? root : root.querySelector("#annotate-form")) : null;
    if (!form) return;
    form.dataset.shownAt = String(performance.now());
    const kind = Prefhub.kinds[form.dataset.kind];
    if (kind && kind.init) kind.init(form);
    syncStrength(form);
    // A form that came back with errors: show the first one.
    const error = form.querySelector('.error[role="alert"]');
    if (error && root !== document.body) {
      error.scrollIntoView({ block: "center" });
      return;
    }
    const work = document.getElementById("work");
    if (work && root !== document.body && work.getBoundingClientRect().top < 0) {
      work.scrollIntoView({ block: "start" });
    }
  }

  // Pairwise: no strength for a tie; the answer bar says what is chosen.
  function syncStrength(form) {
    const strength = form.querySelector("[data-strength]");
    if (!strength) return;
    const choice = form.querySelector('input[name="choice"]:checked');
    strength.disabled = !!choice && choice.value === "tie";
    const current = form.querySelector("[data-current-choice]");
    if (!current) return;
    const by = strength.querySelector("input[data-words]:checked");
    if (!choice) current.textContent = "Your answer: none yet";
    else if (choice.value === "tie") current.textContent = "Your answer: tie";
    else current.textContent = `Your answer: ${choice.value} is better${by ? `, ${by.dataset.words}` : ""}`;
  }

  // Pairwise: a click on a response chooses it (not a click on a link or a control, nor the end
  // of a text selection).
  document.addEventListener("click", (event) => {
    const card = event.target.closest && event.target.closest(".pair > .response");
    if (!card || event.target.closest("a, button, input, label, summary, pre")) return;
    if (!window.getSelection().isCollapsed) return;
    const form = card.closest("form");
    if (form) check(form.querySelector(`input[name="choice"][value="${card.dataset.letter}"]`));
  });

  function check(input) {
    if (!input || input.disabled) return false;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  Prefhub.kinds.pairwise = {
    onKey(event, form) {
      const key = event.key;
      if (["1", "2", "0"].includes(key)) {
        return check(form.querySelector(`input[name="choice"][data-key="${key}"]`));
      }
      if (["s", "c", "m"].includes(key)) {
        const strength = form.querySelector("[data-strength]");
        return !strength.disabled && check(strength.querySelector(`input[data-key="${key}"]`));
      }
      if (key === "r") {
        const rationale = form.querySelector('textarea[name="rationale"]');
        if (rationale) rationale.focus();
        return !!rationale;
      }
      return false;
    },
  };

  // Ratings: a number rates the focused aspect (else the first unrated one), then moves on.
  Prefhub.kinds.ratings = {
    onKey(event, form) {
      if (!/^[0-9]$/.test(event.key)) return false;
      const scales = Array.from(form.querySelectorAll("[data-scale]"));
      let scale = document.activeElement && document.activeElement.closest("[data-scale]");
      if (!scale || !form.contains(scale)) {
        scale = scales.find((s) => !s.querySelector("input:checked")) || scales[0];
      }
      if (!scale || !check(scale.querySelector(`input[value="${event.key}"]`))) return false;
      const next = scales.slice(scales.indexOf(scale) + 1).find((s) => !s.querySelector("input:checked"));
      const target = next && next.querySelector("input");
      (target || scale.querySelector("input:checked")).focus();
      return true;
    },
  };

  document.addEventListener("change", (event) => {
    const form = event.target.form;
    if (form && form.id === "annotate-form") syncStrength(form);
  });

  // Time spent: from the moment the item was shown to the submit.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id !== "annotate-form") return;
    const field = form.querySelector("[data-time-spent]");
    const shownAt = Number(form.dataset.shownAt || 0);
    if (field && shownAt) field.value = String(Math.max(0, Math.round(performance.now() - shownAt)));
  }, true);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const form = currentForm();
    const target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") target.blur();
      // A skip reason chosen from the list: Enter skips, as in the text field next to it.
      if (event.key === "Enter" && target.tagName === "SELECT" && target.closest(".skip-form")) {
        event.preventDefault();
        target.form.requestSubmit();
      }
      return;
    }
    const skip = document.querySelector('[data-testid="skip-panel"]');
    if (event.key === "S" && skip) {
      skip.open = true;
      skip.querySelector("select").focus();
      event.preventDefault();
      return;
    }
    const kind = form && Prefhub.kinds[form.dataset.kind];
    if (event.key !== "Enter" && kind && kind.onKey && kind.onKey(event, form)) {
      event.preventDefault();
      return;
    }
    if (event.key === "g") {
      const guidelines = document.getElementById("guidelines");
      if (guidelines) guidelines.open = !guidelines.open;
      event.preventDefault();
      return;
    }
    if (!form) return;
    if (event.key === "Enter") {
      if (target.closest && target.closest("button, a, summary, [data-no-enter]")) return;
      event.preventDefault();
      form.requestSubmit();
    }
  });

  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document.body));
})();
