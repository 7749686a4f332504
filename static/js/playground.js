/* RANA playground: stream answers over server-sent events, busy state, Stop, examples.
 *
 * An answer element with data-stream-url is opened as an EventSource: "token" events carry
 * JSON strings appended as text (never as HTML); "done" carries the finished answer's HTML
 * (text, error, attempt timeline), which replaces the element. Stop closes every open
 * EventSource and aborts pending htmx requests; the server notices the disconnect, closes
 * the upstream and records the run as cancelled; the answer is then reloaded (it polls
 * itself until the server has finished recording).
 *
 * A button with data-pg-fill="<textarea id>" fills that textarea with the text of the element
 * named by data-pg-source (the tools and schema examples); data-pg-format also picks that
 * response format. Only the last turn of the thread offers to answer its tool calls.
 *
 * On a narrow screen the settings are a drawer: the Settings button (data-pg-settings-toggle)
 * opens and closes it, its Close button and Escape close it, and a field error inside it
 * opens it so the error is seen.
 *
 * A long prompt or answer (data-pg-collapse) is shown cut short with a "Show all" button.
 */
(function () {
  "use strict";

  var streams = {};

  function busyAnswers() {
    return document.querySelectorAll(".pg-msg.assistant.is-busy");
  }

  function refreshBusy() {
    var busy = busyAnswers().length > 0;
    document.body.classList.toggle("pg-is-busy", busy);
    document.querySelectorAll("[data-pg-stop]").forEach(function (b) { b.disabled = !busy; });
    document.querySelectorAll("[data-pg-send]").forEach(function (b) { b.disabled = busy; });
  }

  function closeStream(el) {
    var source = streams[el.id];
    if (source) {
      source.close();
      delete streams[el.id];
      return true;
    }
    return false;
  }

  function collapseLong(root) {
    var found = root.matches && root.matches("[data-pg-collapse]") ? [root] : [];
    if (root.querySelectorAll) root.querySelectorAll("[data-pg-collapse]").forEach(function (el) { found.push(el); });
    found.forEach(function (el) {
      if (el.dataset.pgCollapsed) return;
      el.classList.add("is-collapsed");
      if (el.scrollHeight <= el.clientHeight + 8) {
        el.classList.remove("is-collapsed");
        return;
      }
      el.dataset.pgCollapsed = "1";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "pg-link pg-show-all";
      button.textContent = "Show all";
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", function () {
        var collapsed = el.classList.toggle("is-collapsed");
        button.textContent = collapsed ? "Show all" : "Show less";
        button.setAttribute("aria-expanded", collapsed ? "false" : "true");
      });
      el.insertAdjacentElement("afterend", button);
    });
  }

  function replaceWithHtml(el, html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var fresh = tpl.content.firstElementChild;
    if (!fresh) return;
    el.replaceWith(fresh);
    htmx.process(fresh);
    collapseLong(fresh);
    refreshBusy();
  }

  function reloadAnswer(el) {
    if (!document.body.contains(el)) return;
    htmx.ajax("GET", el.dataset.answerUrl, { target: el, swap: "outerHTML" });
  }

  function startStream(el) {
    if (el.dataset.started) return;
    el.dataset.started = "1";
    var text = el.querySelector("[data-tokens]");
    var label = el.querySelector(".pg-busy-label");
    var source = new EventSource(el.dataset.streamUrl);
    streams[el.id] = source;
    source.addEventListener("token", function (event) {
      if (!el.classList.contains("is-streaming")) {
        el.classList.add("is-streaming");
        if (label) label.textContent = "Streaming…";
      }
      text.textContent += JSON.parse(event.data);
    });
    source.addEventListener("done", function (event) {
      closeStream(el);
      replaceWithHtml(el, event.data);
    });
    source.onerror = function () {
      if (closeStream(el)) reloadAnswer(el);
    };
    refreshBusy();
  }

  function stopAll() {
    busyAnswers().forEach(function (el) {
      var label = el.querySelector(".pg-busy-label");
      if (label) label.textContent = "Stopping…";
      if (!closeStream(el) && el.hasAttribute("data-pending-post")) {
        htmx.trigger(el, "htmx:abort");
      }
      el.removeAttribute("data-stream-url");
      reloadAnswer(el);
    });
  }

  function scrollToBottom() {
    var thread = document.getElementById("pg-thread");
    var last = thread && thread.lastElementChild;
    if (last) last.scrollIntoView({ block: "nearest" });
  }

  function onlyLastTurnAnswersTools() {
    var turns = document.querySelectorAll("#pg-thread .pg-turn");
    for (var i = 0; i < turns.length - 1; i++) {
      turns[i].querySelectorAll("[data-pg-tools]").forEach(function (form) { form.remove(); });
    }
  }

  function fillExample(button) {
    var target = document.getElementById(button.dataset.pgFill);
    var source = document.getElementById(button.dataset.pgSource);
    if (!target || !source) return;
    target.value = source.textContent;
    var format = button.dataset.pgFormat && document.getElementById("id_response_format");
    if (format) format.value = button.dataset.pgFormat;
    var example = button.closest("details.pg-example");
    if (example) example.open = false;
    target.dispatchEvent(new Event("input", { bubbles: true }));
    target.focus();
  }

  function setSettingsOpen(open) {
    var drawer = document.getElementById("pg-settings");
    if (!drawer) return;
    drawer.classList.toggle("is-open", open);
    document.querySelectorAll("[data-pg-settings-toggle]").forEach(function (b) {
      b.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  htmx.onLoad(function (root) {
    var found = root.matches && root.matches("[data-stream-url]") ? [root] : [];
    root.querySelectorAll && root.querySelectorAll("[data-stream-url]").forEach(function (el) { found.push(el); });
    found.forEach(startStream);
    onlyLastTurnAnswersTools();
    collapseLong(root);
    if (document.querySelector("#pg-settings .has-error")) setSettingsOpen(true);
    refreshBusy();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-pg-stop]")) stopAll();
    var fill = event.target.closest("[data-pg-fill]");
    if (fill) fillExample(fill);
    if (event.target.closest("[data-pg-settings-toggle]")) {
      var drawer = document.getElementById("pg-settings");
      setSettingsOpen(!(drawer && drawer.classList.contains("is-open")));
    }
    if (event.target.closest("[data-pg-settings-close]")) setSettingsOpen(false);
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") setSettingsOpen(false);
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.name === "message") {
      event.preventDefault();
      var form = event.target.form;
      if (form && !document.body.classList.contains("pg-is-busy")) form.requestSubmit();
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!event.detail.successful || !event.detail.target || event.detail.target.id !== "pg-thread") return;
    if (form.id === "pg-form") {
      form.querySelector("[name=message]").value = "";
      var image = form.querySelector("[name=image]");
      if (image) image.value = "";
      scrollToBottom();
    } else if (form.hasAttribute("data-pg-tools")) {
      scrollToBottom();
    }
  });

  document.addEventListener("htmx:afterSettle", refreshBusy);
  // A prompt shown inside a closed <details> can only be measured once it is opened.
  document.addEventListener("toggle", function (event) {
    if (event.target.open) collapseLong(event.target);
  }, true);
})();
