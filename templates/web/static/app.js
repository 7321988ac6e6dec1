// The subscriber pages' only script: served from /static/, no inline code, no build step.
// Everything here is an enhancement; every form works without it.
//  - the live preview: asks the server for the preview panel as you type (debounced)
//  - the time zone: taken from the browser (Intl API) on a first visit to the sign-up form
//    (not on a form the server sent back), still editable
//  - after a failed submit: the focus moves to the alert listing the fields to fix
//  - the category picker: a filter box and "n chosen" counts
//  - the weekday field: shown only for a weekly digest
(function () {
  "use strict";

  const DEBOUNCE_MS = 350;
  const PREVIEW_FIELDS = ["include", "exclude", "authors", "categories", "also_trending", "max_papers", "description"];

  // -- live preview ------------------------------------------------------------------------

  // On a narrow screen the form and the preview stack: the preview then goes right after the
  // topic fields (before the long category list), so it can be watched while they are typed
  // (below the Subscribe button it could not); back beside the form on a wide screen.
  function placePreview(form, panel) {
    const exclude = form.querySelector("#exclude");
    const topics = (exclude && exclude.closest(".field")) || form.querySelector("#topics");
    if (!topics || !window.matchMedia) return;
    const home = panel.parentNode;
    const homeNext = panel.nextSibling;
    const narrow = window.matchMedia("(max-width: 900px)");
    function place() {
      if (narrow.matches) {
        topics.after(panel);
        panel.classList.add("preview-inline");
      } else if (panel.parentNode !== home) {
        home.insertBefore(panel, homeNext);
        panel.classList.remove("preview-inline");
      }
    }
    place();
    narrow.addEventListener("change", place);
  }

  function setUpPreview(form) {
    const url = form.dataset.previewUrl;
    const panel = document.querySelector("[data-preview-panel]");
    const body = document.getElementById("preview-body");
    if (!url || !panel || !body) return;
    const loading = panel.querySelector("[data-preview-loading]");
    const status = panel.querySelector("[data-preview-status]");
    let timer = null;
    let controller = null;
    placePreview(form, panel);

    function query() {
      const data = new FormData(form);
      const params = new URLSearchParams();
      for (const name of ["include", "exclude", "authors", "max_papers", "description"]) {
        const value = data.get(name);
        if (value !== null) params.append(name, value);
      }
      for (const value of data.getAll("categories")) params.append("categories", value);
      if (data.get("also_trending")) params.append("also_trending", "1");
      return params.toString();
    }

    let last = query();
    let marked = []; // the fields this script marked aria-invalid, from the preview's errors

    // The fields the preview waits for get aria-invalid; the ones fixed since lose it.
    function markInvalid(fragment) {
      const problem = fragment.querySelector("[data-preview-errors]");
      const names = problem ? problem.dataset.previewErrors.split(" ").filter(Boolean) : [];
      for (const field of marked) field.removeAttribute("aria-invalid");
      marked = [];
      for (const name of names) {
        const field = form.querySelector("#" + name) || form.querySelector("[name=" + name + "]");
        if (field && field.getAttribute("aria-invalid") !== "true") {
          field.setAttribute("aria-invalid", "true");
          marked.push(field);
        }
      }
    }

    // What a screen reader hears after an update: the summary and the first paper, whose
    // title changes when the count does not; or what the preview waits for.
    function announcement(fragment) {
      const problem = fragment.querySelector("[data-preview-errors]");
      if (problem) {
        const messages = Array.from(problem.querySelectorAll("li"), function (li) {
          return li.textContent.trim();
        });
        return "The preview waits for the marked field: " + messages.join(" ");
      }
      const summary = fragment.querySelector("[data-preview-summary]");
      const first = fragment.querySelector(".paper-title");
      let text = summary ? summary.textContent.replace(/\s+/g, " ").trim() : "";
      if (!summary) {
        const empty = fragment.querySelector(".preview-empty");
        text = empty ? empty.textContent.replace(/\s+/g, " ").trim() : "";
      }
      if (first) text += " First: " + first.textContent.replace(/\s+/g, " ").trim() + ".";
      return text;
    }

    function busy(on) {
      panel.classList.toggle("is-loading", on);
      panel.setAttribute("aria-busy", on ? "true" : "false");
      if (loading) loading.hidden = !on;
    }

    function refresh() {
      const current = query();
      if (current === last) return;
      last = current;
      if (controller) controller.abort();
      controller = new AbortController();
      busy(true);
      fetch(url + "?" + current, {
        signal: controller.signal,
        headers: { Accept: "text/html" },
        credentials: "same-origin",
      })
        .then(function (response) {
          if (!response.ok) throw new Error("preview answered " + response.status);
          return response.text();
        })
        .then(function (html) {
          body.innerHTML = html; // server-rendered and escaped; the CSP allows no script in it
          markInvalid(body);
          if (status) status.textContent = announcement(body);
          busy(false);
        })
        .catch(function (error) {
          if (error.name === "AbortError") return;
          busy(false);
          last = ""; // try again on the next keystroke
          if (status) status.textContent = "The preview could not be updated.";
        });
    }

    function changed(event) {
      const name = event.target && event.target.name;
      if (!PREVIEW_FIELDS.includes(name)) return;
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, DEBOUNCE_MS);
    }

    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
  }

  // -- time zone from the browser ----------------------------------------------------------

  function detectTimezone() {
    const input = document.querySelector("[data-detect-timezone]");
    if (!input || input.value !== input.defaultValue) return;
    let zone = "";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (error) {
      return;
    }
    const list = document.getElementById(input.getAttribute("list"));
    const known = list && Array.from(list.options).some(function (o) { return o.value === zone; });
    if (!known || zone === input.value) return;
    input.value = zone;
    const hint = document.querySelector("[data-timezone-hint]");
    if (hint) hint.textContent = "Detected from your browser: " + zone + ". Change it if it's wrong.";
  }

  // -- category picker ---------------------------------------------------------------------

  function setUpPicker() {
    const tools = document.querySelector("[data-picker-tools]");
    const filter = document.querySelector("[data-picker-filter]");
    const total = document.querySelector("[data-picker-total]");
    const groups = Array.from(document.querySelectorAll("[data-picker-group]"));
    if (!groups.length) return;
    if (tools) tools.hidden = false;

    function count() {
      let all = 0;
      for (const group of groups) {
        const chosen = group.querySelectorAll("input[type=checkbox]:checked").length;
        all += chosen;
        const label = group.querySelector("[data-picker-count]");
        if (label) label.textContent = chosen ? chosen + " chosen" : "";
      }
      if (total) total.textContent = all ? all + " chosen" : "";
    }

    function applyFilter() {
      const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      for (const group of groups) {
        let shown = 0;
        for (const option of group.querySelectorAll("[data-picker-option]")) {
          const text = option.textContent.toLowerCase();
          const match = words.every(function (w) { return text.includes(w); });
          option.hidden = !match;
          if (match) shown += 1;
        }
        group.hidden = shown === 0;
        if (words.length) group.open = shown > 0;
      }
    }

    document.addEventListener("change", function (event) {
      if (event.target && event.target.name === "categories") count();
    });
    if (filter) filter.addEventListener("input", applyFilter);
    count();
  }

  // -- weekly digests need a weekday -------------------------------------------------------

  function setUpWeekday() {
    const field = document.querySelector("[data-weekday]");
    const radios = Array.from(document.querySelectorAll("[data-frequency]"));
    if (!field || !radios.length) return;
    function update() {
      const weekly = radios.some(function (r) { return r.checked && r.value === "weekly"; });
      field.hidden = !weekly && !field.classList.contains("has-error");
    }
    for (const radio of radios) radio.addEventListener("change", update);
    update();
  }

  // -- after a failed submit, the alert that lists the fields to fix takes the focus ------

  function focusAlert() {
    const alert = document.querySelector("[data-focus-on-load]");
    if (!alert) return;
    alert.focus();
    // Its links go to the fields: the field itself gets the focus, ready to be corrected.
    alert.addEventListener("click", function (event) {
      const link = event.target.closest && event.target.closest("a[href^='#']");
      const target = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!target) return;
      event.preventDefault();
      target.focus();
      if (history.replaceState) history.replaceState(null, "", link.getAttribute("href"));
    });
  }

  function start() {
    focusAlert();
    detectTimezone();
    setUpPicker();
    setUpWeekday();
    const form = document.querySelector("form[data-preview-form]");
    if (form) setUpPreview(form);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
