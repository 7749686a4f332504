/* RANA: copy buttons. A button with data-copy="text" copies that text; one with
 * data-copy-target="<selector>" copies the text of the element it names. Uses
 * navigator.clipboard where the page may (a secure context), else a hidden textarea and
 * document.execCommand("copy"); the button says whether it worked. */
(function () {
  "use strict";

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "-1000px";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    area.remove();
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function say(button, words) {
    if (!button.dataset.copyLabel) button.dataset.copyLabel = button.textContent;
    button.textContent = words;
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () { button.textContent = button.dataset.copyLabel; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-target]");
    if (!button) return;
    event.preventDefault();
    var text = button.dataset.copy;
    if (text === undefined) {
      var source = document.querySelector(button.dataset.copyTarget);
      text = source ? source.textContent : "";
    }
    copyText(text).then(
      function () { say(button, "Copied"); },
      function () { say(button, "Select and copy by hand"); }
    );
  });
})();
