// The dashboard works without script; this only adds copy buttons (for a new API key).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), function (button) {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    button.hidden = false;
    button.addEventListener("click", function () {
      target.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(target.value).then(done);
      } else {
        try { if (document.execCommand("copy")) done(); } catch (err) { /* selected: copy by hand */ }
      }
    });
  });
})();
